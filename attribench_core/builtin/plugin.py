"""The built-in `core` plugin: a toy dataset and model, your own image folder, and generic localisation
metrics."""

from attribench_core.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register(
        "toy",
        "attribench_core.builtin.toy:make_toy",
        description="Generated 3x32x32 images: a grey square whose quadrant is the label, and a distractor",
    )
    register(
        "images",
        "attribench_core.builtin.images:make_images",
        description="Your image folder (--images DIR, class sub-folders), streamed; --annotations: regions",
    )


@hookimpl
def register_models(register):
    register(
        "toy_cnn",
        "attribench_core.builtin.toy:ToyCNN",
        description="Two-layer CNN trained on core.toy in seconds",
    )


@hookimpl
def register_metrics(register):
    register(
        "relevance_mass",
        "attribench_core.builtin.metrics:RelevanceMass",
        description="Share of attribution mass inside the primary regions (Arras et al. 2022)",
        category="ground_truth",
    )
    register(
        "relevance_rank",
        "attribench_core.builtin.metrics:RelevanceRank",
        description="Share of the top-K attributed pixels inside the primary regions, K = their area",
        category="ground_truth",
    )
    register(
        "pointing_game",
        "attribench_core.builtin.metrics:PointingGame",
        description="Whether the most attributed pixel lies inside the primary regions (Zhang et al. 2018)",
        category="ground_truth",
    )


@hookimpl
def register_executors(register):
    register(
        "local",
        "attribench_core.executor:LocalExecutor",
        description="In this process on --device, batch after batch (the default)",
    )
