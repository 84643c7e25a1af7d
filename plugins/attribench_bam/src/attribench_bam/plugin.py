"""Entry point of the `bam` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

SCENE_K = range(1, 11)
DATASETS = {
    "obj": "composites (objects pasted on scenes) labelled by object; region: the object",
    "scene": "the same composites labelled by scene; region: the object",
    "scene_only": "the same scenes without the object, labelled by scene; region: where the object would be",
    "dog_bedroom": "dogs pasted in bedrooms, labelled bedroom (relative model contrast)",
    "bamboo_forest": "bamboo-forest scenes without the dog; region: where the dog would be (IIR)",
}


@hookimpl
def register_datasets(register):
    for name, text in DATASETS.items():
        register(name, f"attribench_bam.datasets:{name}", description=f"BAM: {text}")
    register(
        "bamboo_forest_patch",
        "attribench_bam.patched:bamboo_forest_patch",
        description="BAM: bamboo_forest with a functionally insignificant patch inside the dog (IIR)",
    )
    for k in SCENE_K:
        register(
            f"scene{k}",
            "attribench_bam.datasets:scene_k",
            kwargs={"k": k},
            description=f"BAM: dog rows, the dog kept in {k} scene class(es), labelled by scene (RMCS)",
        )


MODELS = {
    "obj": ("ObjModel", "objects"),
    "scene": ("SceneModel", "scenes"),
    "scene_only": ("SceneOnlyModel", "scenes without objects"),
}


@hookimpl
def register_models(register):
    for name, (cls, data) in MODELS.items():
        register(name, f"attribench_bam.models:{cls}", description=f"BAM CNN classifying {data}")
    for k in SCENE_K:
        register(
            f"scene{k}",
            "attribench_bam.models:SceneKModel",
            kwargs={"k": k},
            description=f"BAM CNN classifying scenes, trained with the dog in {k} scene class(es)",
        )


@hookimpl
def register_metrics(register):
    metrics = {
        "mcs": "model contrast score: g(obj model) − g(scene model) on the object",
        "idr": "input dependence rate: scene model's object region drops when the object is added",
        "iir": "input independence rate: attribution unchanged by a functionally insignificant patch",
        "rmcs": "relative model contrast: g(scene_i) − g(scene10) on dogs in bedrooms, i = 1..9",
        "tcav": "TCAV score of the dog concept, obj model minus scene model (no attributions used)",
    }
    for name, text in metrics.items():
        register(
            name, f"attribench_bam.metrics:{name.upper()}", description=f"BAM {text}", category="ground_truth"
        )


@hookimpl
def register_reports(register):
    register(
        "report",
        "attribench_bam.report:sections",
        description="BAM: MCS/IDR/IIR with CIs, RMCS over i, TCAV scores",
    )


@hookimpl
def register_commands(cli):
    from attribench_bam.commands import bam_group

    cli.add_command(bam_group)
