"""Entry point of the `checks` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

PKG = "attribench_checks"


@hookimpl
def register_metrics(register):
    metrics = {
        "sparseness": (
            "Sparseness",
            "Gini index of the map's |attribution| per pixel (Chalasani et al. 2020)",
        ),
        "complexity": (
            "Complexity",
            "Entropy of the pixels' fractional contribution |a_i| / Σ|a| (Bhatt et al. 2020)",
        ),
    }
    for name, (target, description) in metrics.items():
        register(name, f"{PKG}.metrics:{target}", description=description, category="complexity")
    register(
        "data_randomisation",
        f"{PKG}.data_randomisation:DataRandomisation",
        description="Similarity of maps of the model and of its twin trained on permuted labels "
        "(Adebayo et al. 2018)",
        category="randomisation",
    )
