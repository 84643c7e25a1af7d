import pytest

from attribench_core.testing import plugin_registry, refused_run


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_bam.plugin

    registry = plugin_registry({"bam": attribench_bam.plugin})
    assert all(e.namespace in ("core", "bam") for e in registry.entries())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bam.mcs", "--size", "8"], "Parameter 'size' must be at least 16; got 8."),
        (["bam.idr", "--n", "1"], "Parameter 'n' must be at least 2; got 1."),
        (["bam.rmcs", "--val", "0"], "Parameter 'val' must be at least 1; got 0."),
        (["bam.iir", "--threshold", "-0.1"], "Parameter 'threshold' must be at least 0; got -0.1."),
        (
            ["bam.iir", "--max-logit-distance", "0"],
            "Parameter 'max_logit_distance' must be greater than 0; got 0.0.",
        ),
        (["bam.tcav", "--random-sets", "1"], "Parameter 'random_sets' must be at least 2; got 1."),
        (["bam.tcav", "--concept-size", "3"], "Parameter 'concept_size' must be at least 4; got 3."),
    ],
)
def test_options_out_of_range_are_refused_when_the_command_is_read(args, message):
    import attribench_bam.plugin

    assert refused_run({"bam": attribench_bam.plugin}, args) == f"Usage error: {message}\n"
