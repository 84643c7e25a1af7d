"""Entry point of the `checks` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

PKG = "attribench_checks"

# name: (module:class, category, description)
METRICS = {
    "sparseness": (
        "metrics:Sparseness",
        "complexity",
        "Gini index of the map's |attribution| per pixel (Chalasani et al. 2020)",
    ),
    "complexity": (
        "metrics:Complexity",
        "complexity",
        "Entropy of the pixels' fractional contribution |a_i| / Σ|a| (Bhatt et al. 2020)",
    ),
    "mprt": (
        "randomisation:MPRT",
        "randomisation",
        "Map similarity as the model's layers are re-initialised from the top (Adebayo et al. 2018)",
    ),
    "random_logit": (
        "randomisation:RandomLogit",
        "randomisation",
        "Similarity of the maps of the predicted and of a random other class (Sixt et al. 2020)",
    ),
    "infidelity": (
        "faithfulness_metrics:Infidelity",
        "faithfulness",
        "E[(IᵀΦ − (f_y(x) − f_y(x − I)))²] over random perturbations I (Yeh et al. 2019)",
    ),
    "faithfulness_correlation": (
        "faithfulness_metrics:FaithfulnessCorrelation",
        "faithfulness",
        "Correlation of Σ_S Φ and the output drop when pixel subsets S are removed (Bhatt et al. 2020)",
    ),
    "data_randomisation": (
        "data_randomisation:DataRandomisation",
        "randomisation",
        "Similarity of maps of the model and of its twin trained on permuted labels (Adebayo et al. 2018)",
    ),
    "max_sensitivity": (
        "robustness:MaxSensitivity",
        "robustness",
        "Largest ‖Φ(x) − Φ(x')‖ / ‖Φ(x)‖ over uniform noise in an L∞ ball (Yeh et al. 2019)",
    ),
    "avg_sensitivity": (
        "robustness:AvgSensitivity",
        "robustness",
        "Mean ‖Φ(x) − Φ(x')‖ / ‖Φ(x)‖ over uniform noise in an L∞ ball (Yeh et al. 2019)",
    ),
    "local_lipschitz": (
        "robustness:LocalLipschitz",
        "robustness",
        "Largest ‖Φ(x) − Φ(x')‖ / ‖x − x'‖ over the same noise (Alvarez-Melis & Jaakkola 2018)",
    ),
    "input_invariance": (
        "robustness:InputInvariance",
        "axiomatic",
        "Map unchanged when the first layer absorbs an input shift (Kindermans et al. 2017)",
    ),
}


@hookimpl
def register_metrics(register):
    for name, (target, category, description) in METRICS.items():
        register(name, f"{PKG}.{target}", description=description, category=category)
