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
    faithfulness = {
        "infidelity": (
            "Infidelity",
            "E[(IᵀΦ − (f_y(x) − f_y(x − I)))²] over random perturbations I (Yeh et al. 2019)",
        ),
        "faithfulness_correlation": (
            "FaithfulnessCorrelation",
            "Correlation of Σ_S Φ and the output drop when pixel subsets S are removed (Bhatt et al. 2020)",
        ),
    }
    for name, (target, description) in faithfulness.items():
        register(
            name, f"{PKG}.faithfulness_metrics:{target}", description=description, category="faithfulness"
        )
