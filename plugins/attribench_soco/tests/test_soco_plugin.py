import pytest

from attribench_core.testing import plugin_registry, refused_run


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_soco.plugin

    registry = plugin_registry({"soco": attribench_soco.plugin})
    assert all(e.namespace in ("core", "soco") for e in registry.entries())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["soco.road", "--noise", "-0.01"], "Parameter 'noise' must be at least 0; got -0.01."),
        (["soco.deletion", "--steps", "0"], "Parameter 'steps' must be at least 1; got 0."),
        (["soco.insertion", "--steps", "-5"], "Parameter 'steps' must be at least 1; got -5."),
        (["soco.validate", "--trials", "0"], "Parameter 'trials' must be at least 1; got 0."),
    ],
)
def test_options_out_of_range_are_refused_when_the_command_is_read(args, message):
    import attribench_soco.plugin

    assert refused_run({"soco": attribench_soco.plugin}, args) == f"Usage error: {message}\n"
