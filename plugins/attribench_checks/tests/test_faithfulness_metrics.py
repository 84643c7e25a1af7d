import json
from types import SimpleNamespace

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
import torch
from attribench_checks import faithfulness_metrics
from attribench_checks.faithfulness_metrics import FaithfulnessCorrelation, Infidelity, PerturbationMetric
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.testing import ShuffledExecutor, plugin_registry, using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
LINEAR_MODEL = """\
import torch


def build(num_classes):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cache for the module's runs: the toy CNN is trained once."""
    return str(tmp_path_factory.mktemp("home"))


@pytest.fixture(autouse=True)
def shared_home(home, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", home)


def run(tmp_path, *args: str, store: str = "attribench.h5") -> dict[str, dict]:
    """`attribench run ARGS --json` on a store in tmp_path: the result rows by explainer."""
    with using_plugins({**PLUGINS, "x": ShuffledExecutor.plugin()}):
        result = CliRunner().invoke(cli, ["run", *args, "--json", "--store", str(tmp_path / store)])
    assert result.exit_code == 0, result.output
    return {row["explainer"]: row for row in json.loads(result.stdout)["results"]}


def test_the_plugin_registers_both_metrics_as_faithfulness():
    registry = plugin_registry({"checks": attribench_checks.plugin})
    metrics = {e.name: e for e in registry.entries("metric") if e.meta.get("category") == "faithfulness"}
    assert sorted(metrics) == ["faithfulness_correlation", "infidelity"]
    assert FaithfulnessCorrelation.higher_is_better and not Infidelity.higher_is_better


def test_on_the_toy_cnn_model_based_maps_beat_random_and_edge_maps(tmp_path):
    explainers = ("-e", "input_x_gradient", "-e", "random", "-e", "edge", "--num-imgs", "8")
    correlation = run(tmp_path, "checks.faithfulness_correlation", *explainers)
    assert {row["n"] for row in correlation.values()} == {8}
    assert correlation["methods.input_x_gradient"]["value"] > 0.5
    assert abs(correlation["methods.random"]["value"]) < 0.2
    infidelity = run(tmp_path, "checks.infidelity", *explainers)
    assert infidelity["methods.input_x_gradient"]["value"] < 0.9 * infidelity["methods.random"]["value"]
    assert infidelity["methods.edge"]["value"] > infidelity["methods.input_x_gradient"]["value"]


@pytest.fixture
def linear_model(tmp_path, monkeypatch):
    """lin.py:build, a linear model f(x) = W·x + c on the toy images, in the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lin.py").write_text(LINEAR_MODEL)
    return ("--model", "lin.py:build", "--num-imgs", "6")


def test_on_a_linear_model_of_your_own_input_x_gradient_is_exactly_faithful(tmp_path, linear_model):
    """f(x) − f(x with S set to 0) = Σ_{i∈S} (w ⊙ x)_i: input×gradient predicts removals exactly."""
    explainers = ("-e", "input_x_gradient", "-e", "gradient", *linear_model)
    correlation = run(tmp_path, "checks.faithfulness_correlation", *explainers)
    assert correlation["methods.input_x_gradient"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert correlation["methods.gradient"]["value"] < 0.99
    square = run(tmp_path, "checks.infidelity", *explainers, "--perturbation", "square", "--scale", "none")
    assert square["methods.input_x_gradient"]["value"] < 1e-10
    assert square["methods.gradient"]["value"] > 1e-4


def test_on_a_linear_model_the_gradient_has_gaussian_infidelity_0(tmp_path, linear_model):
    """f(x) − f(x − I) = wᵀI: the gradient predicts every Gaussian perturbation, input×gradient does not."""
    rows = run(tmp_path, "checks.infidelity", "-e", "gradient", "-e", "input_x_gradient", *linear_model)
    assert rows["methods.gradient"]["value"] < 1e-10
    assert rows["methods.input_x_gradient"]["value"] > 1e-4


@pytest.mark.parametrize("metric", ["checks.infidelity", "checks.faithfulness_correlation"])
def test_another_executor_and_another_batch_size_give_the_same_values(tmp_path, metric):
    args = (metric, "-e", "gradient", "-e", "random", "--num-imgs", "6", "--perturbations", "20")
    args = args if metric == "checks.infidelity" else (*args[:-2], "--subsets", "20")
    local = run(tmp_path, *args, store="local.h5")
    shuffled = run(tmp_path, *args, "--executor", "x.shuffled", "--shuffled-seed", "5", store="shuffled.h5")
    assert shuffled == local
    batched = run(tmp_path, *args, "--batch-size", "4", store="batched.h5")
    # methods.random's maps themselves depend on the batches; the gradient's do not
    assert batched["methods.gradient"]["value"] == pytest.approx(local["methods.gradient"]["value"], rel=1e-6)
    other_seed = run(tmp_path, *args, "--seed", "1", store="seed.h5")
    assert other_seed["methods.gradient"]["value"] != local["methods.gradient"]["value"]


class LinearContext:
    """The part of a metric context the faithfulness metrics read: one batch of images and stored maps,
    and a linear model."""

    device, seed = "cpu", 0

    def __init__(self, attribution: np.ndarray, nonfinite: np.ndarray):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(attribution[0].size, 2))
        count = len(attribution)
        self.images = torch.rand(count, *attribution.shape[1:])
        self.stored = SimpleNamespace(
            index=np.arange(count), attribution=attribution, nonfinite=nonfinite, target=np.zeros(count, int)
        )
        self.model_name = "linear"

    def attribution_batches(self, explainer):
        yield SimpleNamespace(images=self.images), self.stored

    def load_model(self, name):
        return self.model

    def rng(self, purpose):
        return np.random.default_rng(len(purpose))


def test_non_finite_and_constant_maps_are_skipped_with_their_reason():
    maps = np.random.default_rng(0).random((4, 1, 4, 4)).astype(np.float32)
    maps[1] = 0.5
    maps[2, 0, 0, 0] = np.nan
    ctx = LinearContext(maps, nonfinite=np.array([False, False, True, False]))
    correlation = FaithfulnessCorrelation(subset_size=3, subsets=10).compute(ctx, "e")
    assert correlation.skipped == {
        "non-finite attribution": 1,
        "constant attribution sums or output drops": 1,
    }
    np.testing.assert_array_equal(correlation.index, [0, 3])
    infidelity = Infidelity(perturbations=10).compute(ctx, "e")
    assert infidelity.skipped == {"non-finite attribution": 1}
    np.testing.assert_array_equal(infidelity.index, [0, 1, 3])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("checks.faithfulness_correlation", "--subset-size", "1024"), "--subset-size 1024 leaves no pixel"),
        (("checks.infidelity", "--perturbation", "square", "--patch", "33"), "--patch 33 is larger than"),
        (("checks.infidelity", "--scale", "best"), "Parameter 'scale' must be one of optimal, none"),
    ],
)
def test_options_that_do_not_fit_are_refused_in_one_line(tmp_path, args, message):
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(cli, ["run", *args, "-e", "gradient", "--store", str(tmp_path / "s.h5")])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_forward_passes_are_small_on_a_cpu_and_large_on_an_accelerator():
    assert faithfulness_metrics.pass_rows(torch.device("cpu"), 3 * 224 * 224) == 3
    assert faithfulness_metrics.pass_rows(torch.device("cpu"), 2**20) == 1
    assert faithfulness_metrics.pass_rows(torch.device("cuda"), 3 * 224 * 224) == 222


def test_outputs_in_many_passes_equal_one_pass(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    perturbed, targets = torch.rand(2, 5, 3, 2, 2), torch.tensor([2, 0])
    one_pass = PerturbationMetric.outputs(model, perturbed, targets)
    assert one_pass.shape == (2, 5)
    np.testing.assert_array_equal(one_pass[1], model(perturbed[1].flatten(1))[:, 0].detach())
    monkeypatch.setitem(faithfulness_metrics.PASS_ELEMENTS, "cpu", 24)  # two images a pass
    torch.testing.assert_close(PerturbationMetric.outputs(model, perturbed, targets), one_pass)
