"""Entry point of the `smerf` plugin: registration only (lazy targets; nothing heavy is imported)."""

from attribench_core import hookimpl

SETTINGS = (
    "simple_fr",
    "simple_nr",
    "complex_fr",
    "complex_cr1",
    "complex_cr2",
    "complex_cr3",
    "complex_cr4",
)
VARIANTS = {"cnn": "", "pgd": "_pgd", "vgg": "_vgg"}
VARIANT_TEXT = {
    "cnn": "CNN (paper A.2)",
    "pgd": "PGD adversarially trained CNN",
    "vgg": "VGG-style deeper net",
}


@hookimpl
def register_datasets(register):
    for setting in SETTINGS:
        register(
            setting,
            f"attribench_smerf.datasets:{setting}",
            description=f"SMERF TextBox images (64x64) for {setting}: labels and roles as paper Table 1",
        )


@hookimpl
def register_models(register):
    for setting in SETTINGS:
        for variant, suffix in VARIANTS.items():
            register(
                f"{setting}{suffix}",
                "attribench_smerf.models:SmerfModel",
                kwargs={"setting": setting, "variant": variant},
                description=f"SMERF {VARIANT_TEXT[variant]} for {setting}, gated per bucket",
            )


@hookimpl
def register_metrics(register):
    register(
        "afl",
        "attribench_smerf.metrics:AFL",
        description="SMERF attribution focus: PAFL (on what the model uses), SAFL (on what it ignores)",
        category="ground_truth",
    )
    register(
        "iou",
        "attribench_smerf.metrics:IOU",
        description="SMERF IOU of the top-K attributed pixels with each object: PIOU and SIOU",
        category="ground_truth",
    )
    register(
        "mafl",
        "attribench_smerf.metrics:MAFL",
        description="SMERF mean attribution focus level per pixel: PMAFL vs SMAFL",
        category="ground_truth",
    )


@hookimpl
def register_reports(register):
    register(
        "report",
        "attribench_smerf.report:sections",
        description="SMERF: PAFL/SAFL bars, minima over buckets, Fig. 7 grids, saturation, model accuracy",
    )


@hookimpl
def register_commands(cli):
    from attribench_smerf.commands import smerf_group

    cli.add_command(smerf_group)
