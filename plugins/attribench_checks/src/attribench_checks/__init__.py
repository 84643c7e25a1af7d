"""attribench-checks: sanity, robustness, complexity and faithfulness checks of attribution maps."""
