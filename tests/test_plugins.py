"""Loading policy: broken plugins warn and are recorded, strict mode fails, env vars block, typos fail."""

import json
import types
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner
from pluggy import PluginValidationError
from subprocess_cli import fake_install, run_attribench

from attribench_core import hookimpl, plugins
from attribench_core.cli import cli
from attribench_core.errors import PluginError
from attribench_core.hookspecs import hookspec
from attribench_core.testing import plugin_registry


def test_plugin_that_raises_on_import_is_reported_and_does_not_stop_list(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-broken", {"broken": "module_that_does_not_exist.plugin"})
    fake_install(site, "attribench-fixture", {"t": "abfixture.plugin"})
    listed = run_attribench(["list", "--json"], site=site)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert {"t.grad", "t.noise", "core.relevance_mass"} <= names
    assert "broken" in listed.stderr and "failed to load" in listed.stderr
    shown = run_attribench(["plugins", "--json"], site=site)
    record = {r["namespace"]: r for r in json.loads(shown.stdout)}["broken"]
    assert record["dist"] == "attribench-broken"
    assert "ModuleNotFoundError" in record["error"]


def test_strict_mode_turns_load_errors_into_a_one_line_failure(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-broken", {"broken": "module_that_does_not_exist.plugin"})
    result = run_attribench(["list"], site=site, env={"ATTRIBENCH_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: Plugin 'broken' (module_that_does_not_exist.plugin) failed to load: "
        "ModuleNotFoundError: No module named 'module_that_does_not_exist'"
    ]


def test_disable_plugins_blocks_a_namespace(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-fixture", {"t": "abfixture.plugin"})
    result = run_attribench(
        ["list", "explainers", "--json"], site=site, env={"ATTRIBENCH_DISABLE_PLUGINS": "t,x"}
    )
    assert not any(row["plugin"] == "t" for row in json.loads(result.stdout))


def test_misspelt_hook_is_caught():
    class Typo:
        @hookimpl
        def register_explainer(self, register):  # missing "s"
            pass

    with pytest.raises(PluginValidationError, match="register_explainer"):
        plugins.make_plugins(load_entrypoints=False, extra={"typo": Typo()})


def test_register_hook_that_raises_is_recorded_and_its_entries_dropped():
    class HalfWay:
        @hookimpl
        def register_explainers(self, register):
            register("fine", "abfixture.explainers:Gradient")
            raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="'half' failed to load: RuntimeError: boom"):
        loaded = plugins.make_plugins(load_entrypoints=False, extra={"half": HalfWay()})
        registry = plugins.build_registry(loaded)
    assert loaded.records["half"].error == "RuntimeError: boom"
    assert not registry.entries(plugin="half")
    with pytest.raises(PluginError):
        plugins.build_registry(
            plugins.make_plugins(load_entrypoints=False, extra={"half": HalfWay()}, strict=True)
        )


def test_core_plugin_registers_the_builtins():
    names = {e.qualified for e in plugin_registry().entries()}
    assert names == {
        "core.toy",
        "core.images",
        "core.toy_cnn",
        "core.relevance_mass",
        "core.relevance_rank",
        "core.pointing_game",
        "core.local",
    }


def test_an_installed_third_party_plugin_is_listed_and_runs(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-example", {"example": "attribench_example.plugin"})
    example_src = Path(__file__).parents[1] / "examples" / "attribench-example-plugin" / "src"
    listed = run_attribench(
        ["list", "explainers", "--json", "--plugin", "example"], site=site, paths=(example_src,)
    )
    assert [row["name"] for row in json.loads(listed.stdout)] == [
        "example.gradient_magnitude",
        "example.smoothed_gradient",
    ]
    ran = run_attribench(
        ["run", "core.relevance_mass", "--explainer=example.gradient_magnitude", "--num-imgs", "8", "--json"],
        site=site,
        paths=(example_src,),
        env={"ATTRIBENCH_STRICT_PLUGINS": "1"},
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["results"][0]["explainer"] == "example.gradient_magnitude"


def test_hooks_are_called_through_pluggy_so_an_implementation_may_name_fewer_arguments():
    called = []

    class NoArguments:
        @hookimpl
        def register_reports(self):
            called.append("register_reports")

    plugin_registry({"quiet": NoArguments()})
    assert called == ["register_reports"]


def test_a_hook_spec_can_gain_an_argument_without_breaking_older_plugins():
    @hookspec
    def register_explainers(register, device):
        """A later version of the hook, with one more argument."""

    specs = types.ModuleType("later_specs")
    specs.register_explainers = register_explainers
    got = {}

    class Older:
        @hookimpl
        def register_explainers(self, register):
            got["older"] = register

    class Newer:
        @hookimpl
        def register_explainers(self, register, device):
            got["newer"] = (register, device)

    manager = pluggy.PluginManager(plugins.GROUP)
    manager.add_hookspecs(specs)
    manager.register(Older(), name="older")
    manager.register(Newer(), name="newer")
    loaded = plugins.Plugins(manager, {}, strict=True, specs=specs)
    loaded.call("older", "register_explainers", register="r", device="cpu")
    assert got == {"older": "r"}  # only the plugin asked for, with only what it names
    loaded.call("newer", "register_explainers", register="r", device="cpu")
    assert got == {"older": "r", "newer": ("r", "cpu")}


def test_strict_loads_the_plugins_once(monkeypatch):
    made = []
    make = plugins.make_plugins

    def counted(**kwargs):
        made.append(kwargs)
        return make(**kwargs)

    monkeypatch.setattr(plugins, "make_plugins", counted)
    plugins.use(None)
    try:
        result = CliRunner().invoke(cli, ["--strict", "list", "metrics", "--json"])
    finally:
        plugins.use(None)
    assert result.exit_code == 0, result.output
    assert made == [{"strict": True}]
    assert "core.relevance_mass" in {row["name"] for row in json.loads(result.stdout)}
