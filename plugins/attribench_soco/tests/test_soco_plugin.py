from attribench_core.testing import plugin_registry


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_soco.plugin

    registry = plugin_registry({"soco": attribench_soco.plugin})
    assert all(e.namespace in ("core", "soco") for e in registry.entries())
