"""Entry point `example = "attribench_example.plugin"`: registration only, nothing heavy imported."""

from attribench_core import hookimpl


@hookimpl
def register_explainers(register):
    register(
        "gradient_magnitude",
        "attribench_example.explainers:GradientMagnitude",
        description="|gradient| of the target logit, optionally smoothed with a box filter",
    )
    # the same class under a second name, with an argument bound (a name users can grep and list)
    register(
        "smoothed_gradient",
        "attribench_example.explainers:GradientMagnitude",
        kwargs={"window": 5},
        description="|gradient| of the target logit, box-filtered over 5 x 5 pixels",
    )
