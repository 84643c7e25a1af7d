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
    randomisation = {
        "mprt": (
            "MPRT",
            "Map similarity as the model's layers are re-initialised from the top (Adebayo et al. 2018)",
        ),
        "random_logit": (
            "RandomLogit",
            "Similarity of the maps of the predicted and of a random other class (Sixt et al. 2020)",
        ),
    }
    for name, (target, description) in randomisation.items():
        register(name, f"{PKG}.randomisation:{target}", description=description, category="randomisation")
