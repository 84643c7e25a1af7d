"""Entry point of the `checks` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

PKG = "attribench_checks"

# (module, category) → {name: (class, description)}
METRICS = {
    ("metrics", "complexity"): {
        "sparseness": (
            "Sparseness",
            "Gini index of the map's |attribution| per pixel (Chalasani et al. 2020)",
        ),
        "complexity": (
            "Complexity",
            "Entropy of the pixels' fractional contribution |a_i| / Σ|a| (Bhatt et al. 2020)",
        ),
    },
    ("randomisation", "randomisation"): {
        "mprt": (
            "MPRT",
            "Map similarity as the model's layers are re-initialised from the top (Adebayo et al. 2018)",
        ),
        "random_logit": (
            "RandomLogit",
            "Similarity of the maps of the predicted and of a random other class (Sixt et al. 2020)",
        ),
    },
}


@hookimpl
def register_metrics(register):
    for (module, category), metrics in METRICS.items():
        for name, (target, description) in metrics.items():
            register(name, f"{PKG}.{module}:{target}", description=description, category=category)
