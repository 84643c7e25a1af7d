from attribench_core.testing import plugin_registry


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_smerf.plugin

    registry = plugin_registry({"smerf": attribench_smerf.plugin})
    assert all(e.namespace in ("core", "smerf") for e in registry.entries())
