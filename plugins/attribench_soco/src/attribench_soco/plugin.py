"""Entry point of the `soco` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

PKG = "attribench_soco"


@hookimpl
def register_explainers(register):
    register(
        "modified",
        f"{PKG}.explainers:Modified",
        kwargs={"registry": register.registry},  # where it finds its base explainer
        description="Another explainer's map after SoCo's Remove or Introduce modification",
        computed_by=PKG,
        channel_less=True,
    )


@hookimpl
def register_metrics(register):
    metrics = {
        "soundness": (
            "Soundness",
            "Share of attribution on features that raise accuracy (Li, Zhang et al. 2024)",
        ),
        "completeness": ("Completeness", "Accuracy drop when the pixels above each attribution threshold go"),
        "road": ("Road", "ROAD (Rong et al. 2022): MoRF and LeRF by area with noisy linear imputation"),
        "deletion": (
            "Deletion",
            "Petsiuk et al.'s Deletion: class probability AUC as top pixels are removed",
        ),
        "insertion": ("Insertion", "Petsiuk et al.'s Insertion: class probability AUC inserting into a blur"),
        "deletion_accuracy": (
            "DeletionAccuracy",
            "SoCo's Deletion: accuracy as the most attributed pixels go",
        ),
        "insertion_accuracy": ("InsertionAccuracy", "Accuracy as only the most attributed pixels are kept"),
    }
    for name, (target, description) in metrics.items():
        register(name, f"{PKG}.metrics:{target}", description=description, category="faithfulness")
    register(
        "validate",
        f"{PKG}.validation:Validate",
        description="SoCo's validation: Table 1's Hausdorff distances and the synthetic linear test",
        category="validation",
    )


@hookimpl
def register_reports(register):
    register(
        "report",
        f"{PKG}.report:sections",
        description="Soundness, completeness, ROAD, Deletion and Insertion curves; Table 1, linear test",
    )
