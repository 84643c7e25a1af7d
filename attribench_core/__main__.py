"""`python -m attribench_core ...`: the `attribench` command through an interpreter (used by the Makefile,
which works with any environment's Python, whether or not its scripts are on PATH)."""

from attribench_core.cli import main

main()
