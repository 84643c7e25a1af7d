"""How a plugin author tests a plugin: registry, contract check, and a CLI run, all without installing."""

import json

import attribench_example.plugin
import pytest
import torch
from attribench_example.explainers import GradientMagnitude
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.testing import check_explainer, plugin_registry, refused_run, using_plugins


def test_registered_under_its_namespace():
    entry = plugin_registry({"example": attribench_example.plugin}).resolve("explainer", "gradient_magnitude")
    assert entry.qualified == "example.gradient_magnitude"
    assert entry.load() is GradientMagnitude


def test_a_name_registered_with_an_argument_makes_the_class_with_it():
    entry = plugin_registry({"example": attribench_example.plugin}).resolve("explainer", "smoothed_gradient")
    assert entry.load() is GradientMagnitude
    assert entry.create().params["window"] == 5
    assert entry.create(window=3).params["window"] == 3  # a given argument wins


def test_explainer_contract_and_a_hand_checked_case():
    check_explainer(GradientMagnitude(window=3))
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        linear[1].weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.0, 0.0, 0.0, 0.0]]))
    out = GradientMagnitude()(linear, torch.ones(1, 1, 2, 2), torch.tensor([0]))
    assert out.flatten().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "home"))
    with using_plugins({"example": attribench_example.plugin}):
        result = CliRunner().invoke(
            cli,
            ["run", "core.relevance_mass", "-e", "gradient_magnitude:window=3", "--num-imgs", "8", "--json"],
        )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["results"][0]
    assert row["explainer"] == "example.gradient_magnitude:window=3"
    assert 0 < row["value"] <= 1


@pytest.mark.parametrize(
    ("window", "message"), [("0", "must be at least 1; got 0"), ("2", "must be odd; got 2")]
)
def test_a_bad_window_is_refused_when_the_command_is_read(window, message):
    """Exit 2 with one line, before anything is computed or stored."""
    args = ["core.relevance_mass", "-e", f"gradient_magnitude:window={window}"]
    assert (
        refused_run({"example": attribench_example.plugin}, args)
        == f"Usage error: Parameter 'window' {message}.\n"
    )
