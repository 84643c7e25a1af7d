import pytest

from attribench_core.testing import plugin_registry, refused_run


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_smerf.plugin

    registry = plugin_registry({"smerf": attribench_smerf.plugin})
    assert all(e.namespace in ("core", "smerf") for e in registry.entries())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["smerf.afl", "--blur", "-1"], "Parameter 'blur' must be at least 0; got -1."),
        (["smerf.iou", "--blur", "-3"], "Parameter 'blur' must be at least 0; got -3."),
    ],
)
def test_options_out_of_range_are_refused_when_the_command_is_read(args, message):
    import attribench_smerf.plugin

    assert refused_run({"smerf": attribench_smerf.plugin}, args) == f"Usage error: {message}\n"
