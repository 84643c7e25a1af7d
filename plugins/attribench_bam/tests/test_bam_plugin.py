from attribench_core.testing import plugin_registry


def test_the_plugin_loads_and_registers_under_its_namespace():
    import attribench_bam.plugin

    registry = plugin_registry({"bam": attribench_bam.plugin})
    assert all(e.namespace in ("core", "bam") for e in registry.entries())
