"""attribench-example: a third-party plugin registering one explainer, `example.grad_times_mask`."""
