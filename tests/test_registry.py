import sys

import pytest

from attribench_core import hookimpl
from attribench_core.errors import AmbiguousNameError, PluginError, UnknownNameError
from attribench_core.runner import parse_explainer
from attribench_core.testing import plugin_registry


class Explainers:
    def __init__(self, *names, aliases=()):
        self.names, self.aliases = names, aliases

    @hookimpl
    def register_explainers(self, register):
        for name in self.names:
            register(
                name, "abfixture.explainers:Gradient", description=f"{name} explainer", aliases=self.aliases
            )


def test_names_are_qualified_with_the_namespace():
    registry = plugin_registry({"a": Explainers("ig")})
    assert registry.resolve("explainer", "ig").qualified == "a.ig"
    assert registry.resolve("explainer", "a.ig").qualified == "a.ig"
    assert registry.resolve("metric", "relevance_mass").qualified == "core.relevance_mass"


def test_aliases_resolve_short_and_qualified():
    registry = plugin_registry({"a": Explainers("ig", aliases=("integrated",))})
    assert registry.resolve("explainer", "integrated").qualified == "a.ig"
    assert registry.resolve("explainer", "a.integrated").qualified == "a.ig"


def test_ambiguous_short_name_lists_the_qualified_choices():
    registry = plugin_registry({"a": Explainers("ig"), "b": Explainers("ig")})
    with pytest.raises(
        AmbiguousNameError, match=r"'ig' is provided by a.ig and b.ig; use the qualified name"
    ):
        registry.resolve("explainer", "ig")
    assert registry.resolve("explainer", "b.ig").namespace == "b"


def test_unknown_name_suggests_close_matches_and_counts():
    registry = plugin_registry()
    with pytest.raises(UnknownNameError) as info:
        registry.resolve("metric", "core.relevance_mas")
    assert str(info.value) == (
        "Unknown metric 'core.relevance_mas'. Did you mean core.relevance_mass, core.relevance_rank? "
        "Run `attribench list metrics` to see all 3."
    )


def test_unknown_first_party_namespace_says_how_to_install():
    with pytest.raises(
        UnknownNameError, match=r"'bam' plugin is not installed: pip install -e plugins/attribench_bam"
    ):
        plugin_registry().resolve("metric", "bam.mcs")


def test_duplicate_registration_names_both_places():
    with pytest.raises(
        PluginError, match=r"registered twice: at .*test_registry.py:\d+ and at .*test_registry.py:\d+"
    ):
        plugin_registry({"a": Explainers("ig", "ig")})


@pytest.mark.parametrize("bad", ["IG", "1ig", "ig-sq", "a.b", ""])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(PluginError, match="must match"):
        plugin_registry({"a": Explainers(bad)})


def test_lazy_targets_are_not_imported_until_loaded():
    registry = plugin_registry({"a": Explainers("ig")})
    entry = registry.resolve("explainer", "ig")
    assert entry.target == "abfixture.explainers:Gradient"
    assert entry.load().__name__ == "Gradient"


def test_broken_lazy_target_names_the_entry():
    class Broken:
        @hookimpl
        def register_explainers(self, register):
            register("nope", "abfixture.explainers:DoesNotExist")

    entry = plugin_registry({"x": Broken()}).resolve("explainer", "nope")
    with pytest.raises(
        PluginError, match=r"explainer x.nope: cannot load target 'abfixture.explainers:DoesNotExist'"
    ):
        entry.load()


def test_a_target_registered_with_arguments_is_created_with_them(tmp_path, monkeypatch):
    (tmp_path / "kwtarget.py").write_text(
        "def make(split='test', seed=0, *, size):\n    return split, seed, size\n"
    )
    monkeypatch.syspath_prepend(tmp_path)

    class Sized:
        @hookimpl
        def register_datasets(self, register):
            register("small", "kwtarget:make", kwargs={"size": 3}, category="tiny")
            register("big", "kwtarget:make", kwargs={"size": 9})

    registry = plugin_registry({"a": Sized()})
    small, big = registry.resolve("dataset", "small"), registry.resolve("dataset", "big")
    assert "kwtarget" not in sys.modules  # registering with arguments imports nothing
    assert (small.kwargs, small.meta) == ({"size": 3}, {"category": "tiny"})
    assert small.create("train", 1) == ("train", 1, 3)
    assert big.create() == ("test", 0, 9)
    assert small.create(size=5) == ("test", 0, 5)  # given keywords win, as with functools.partial
    assert small.load() is big.load()  # one target, two names


def test_an_explainers_bound_parameter_counts_as_given():
    class Slow:
        @hookimpl
        def register_explainers(self, register):
            register("slow_grad", "abfixture.explainers:Gradient", kwargs={"delay": 0.5})

    registry = plugin_registry({"a": Slow()})
    config = parse_explainer(registry, "slow_grad")
    assert (config.label, config.resolved, config.build().params) == (
        "a.slow_grad",
        {"delay": 0.5},
        {"delay": 0.5},
    )
    assert parse_explainer(registry, "slow_grad:delay=0").resolved == {"delay": 0.0}
