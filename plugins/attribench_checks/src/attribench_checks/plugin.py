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
    robustness = {
        "max_sensitivity": (
            "MaxSensitivity",
            "Largest ‖Φ(x) − Φ(x')‖ / ‖Φ(x)‖ over uniform noise in an L∞ ball (Yeh et al. 2019)",
        ),
        "avg_sensitivity": (
            "AvgSensitivity",
            "Mean ‖Φ(x) − Φ(x')‖ / ‖Φ(x)‖ over uniform noise in an L∞ ball (Yeh et al. 2019)",
        ),
        "local_lipschitz": (
            "LocalLipschitz",
            "Largest ‖Φ(x) − Φ(x')‖ / ‖x − x'‖ over the same noise (Alvarez-Melis & Jaakkola 2018)",
        ),
    }
    for name, (target, description) in robustness.items():
        register(name, f"{PKG}.robustness:{target}", description=description, category="robustness")
    register(
        "input_invariance",
        f"{PKG}.robustness:InputInvariance",
        description="Map unchanged when the first layer absorbs an input shift (Kindermans et al. 2017)",
        category="axiomatic",
    )
