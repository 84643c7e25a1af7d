"""Entry point `example = "attribench_example.plugin"`: registration only, nothing heavy imported."""

from attribench_core import hookimpl


@hookimpl
def register_explainers(register):
    register(
        "gradient_magnitude",
        "attribench_example.explainers:GradientMagnitude",
        description="|gradient| of the target logit, optionally smoothed with a box filter",
    )
