"""The robustness metrics (max/avg sensitivity, local Lipschitz) and input invariance: their variants, their
values against a direct computation, the store's reuse, other executors, a user's model and folder."""

import copy
import json

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
import torch
from attribench_checks.perturbations import ShiftAbsorbed, ShiftPaddedConv2d, UniformNoise
from click.testing import CliRunner
from photo_folder import write_photos
from torch import nn

from attribench_core import Normalize, UsageProblem, perturbation_generators
from attribench_core.cli import cli
from attribench_core.runner import RunRequest, run
from attribench_core.testing import ShuffledExecutor, plugin_registry, refused_run, tiny_model, using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
ROBUSTNESS = ("checks.max_sensitivity", "checks.avg_sensitivity", "checks.local_lipschitz")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cache for the module, so that the toy model trains once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def cache(home, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", str(home))


def cli_run(*args: str, plugins=PLUGINS):
    with using_plugins(plugins):
        return CliRunner().invoke(cli, ["run", *args])


def rows(*args: str, plugins=PLUGINS) -> dict[str, dict]:
    result = cli_run(*args, "--json", plugins=plugins)
    assert result.exit_code == 0, result.output
    return {row["explainer"]: row for row in json.loads(result.stdout)["results"]}


# --- the variants ---------------------------------------------------------------------------------------


def test_uniform_noise_stays_in_the_ball_and_comes_only_from_the_generators():
    images = torch.rand(2, 3, 8, 8)
    noise = UniformNoise(0.1, draw=1)

    def generators():
        return [torch.Generator().manual_seed(s) for s in (4, 5)]

    perturbed = noise.perturb(images, generators())
    assert (perturbed - images).abs().max() <= 0.1 and (perturbed - images).abs().max() > 0.09
    assert torch.equal(perturbed, noise.perturb(images, generators()))
    assert not torch.allclose(perturbed[0] - images[0], perturbed[1] - images[1])
    assert UniformNoise(0.1, 0).identity() != UniformNoise(0.1, 1).identity()


def _conv_then_head(first: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(first, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * channels, 3))


NORMALIZE = Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
SHIFTABLE = {
    "conv, zero padding": lambda: _conv_then_head(nn.Conv2d(3, 4, 3, padding=1), 4),
    "conv, no bias, stride 2": lambda: _conv_then_head(nn.Conv2d(3, 4, 3, 2, padding=2, bias=False), 4),
    "conv, same padding, dilation, groups": lambda: _conv_then_head(
        nn.Conv2d(3, 6, 4, padding="same", dilation=2, groups=3), 6
    ),
    "conv, reflect padding": lambda: _conv_then_head(nn.Conv2d(3, 4, 3, 1, 1, padding_mode="reflect"), 4),
    "normalised conv": lambda: nn.Sequential(NORMALIZE, _conv_then_head(nn.Conv2d(3, 4, 3, padding=1), 4)),
    "normalised linear": lambda: nn.Sequential(NORMALIZE, nn.Flatten(), nn.Linear(3 * 8 * 8, 5)),
    "linear alone": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)),
    "toy CNN layout": lambda: tiny_model(),
}


@pytest.mark.parametrize("shift", [-1.0, 0.5])
@pytest.mark.parametrize("name", sorted(SHIFTABLE))
def test_the_shifted_model_on_shifted_inputs_gives_the_models_logits(name, shift):
    model = SHIFTABLE[name]().eval()
    shifted = ShiftAbsorbed(shift).alter(copy.deepcopy(model), torch.Generator())
    images = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(shifted(images + shift), model(images), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(shifted(images), model(images), atol=1e-3)


def test_without_padding_with_the_shift_the_pair_differs_at_the_borders_only():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    images = torch.rand(2, 3, 6, 6)
    shift = torch.tensor([-1.0])
    with torch.no_grad():
        absorbed = ShiftPaddedConv2d(conv, shift)
        bias_only = nn.Conv2d(3, 4, 3, padding=1)
        bias_only.load_state_dict({"weight": absorbed.weight, "bias": absorbed.bias})
        reference = conv(images)
        torch.testing.assert_close(absorbed(images - 1), reference)
        gap = (bias_only(images - 1) - reference).abs().amax(dim=(0, 1))
    assert gap[1:-1, 1:-1].max() < 1e-5 and gap[0].min() > 1e-3 and gap[:, -1].min() > 1e-3


def test_a_model_whose_first_weighted_layer_is_no_conv_or_linear_is_refused():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3))
    with pytest.raises(UsageProblem, match="first weighted layer is a Conv2d or a Linear; its first is"):
        ShiftAbsorbed(-1.0).alter(model, torch.Generator())


# --- the metrics ----------------------------------------------------------------------------------------


def test_the_plugin_registers_robustness_and_axiomatic_metrics():
    registry = plugin_registry({"checks": attribench_checks.plugin})
    categories = {e.qualified: e.meta["category"] for e in registry.entries("metric")}
    assert {name: categories[name] for name in ROBUSTNESS} == dict.fromkeys(ROBUSTNESS, "robustness")
    assert categories["checks.input_invariance"] == "axiomatic"
    for name in (*ROBUSTNESS, "checks.input_invariance"):
        registry.resolve("metric", name).load()


def _request(metric: str, store, **changes) -> RunRequest:
    return RunRequest(
        metric,
        ["gradient", "random"],
        num_imgs=6,
        batch_size=4,
        store=store,
        options={"samples": 3, "radius": 0.05},
        **changes,
    )


def test_the_three_robustness_metrics_share_their_perturbed_maps(tmp_path):
    registry = plugin_registry(PLUGINS)
    first = run(registry, _request("checks.max_sensitivity", tmp_path / "s.h5"))
    assert first.computed == 2 * 6 * (1 + 3)  # two explainers, the map of x and of 3 draws each
    outcomes = {m: run(registry, _request(m, tmp_path / "s.h5")) for m in ROBUSTNESS[1:]}
    assert {m: o.computed for m, o in outcomes.items()} == dict.fromkeys(ROBUSTNESS[1:], 0)
    maximum = first.results["methods.gradient"].per_sample["max_sensitivity"]
    mean = outcomes["checks.avg_sensitivity"].results["methods.gradient"].per_sample["avg_sensitivity"]
    assert (maximum >= mean).all() and (mean > 0).all()
    # methods.random draws a new U[0,1) map for each perturbation: two independent maps a, b differ by
    # ‖a − b‖ / ‖a‖ ≈ √(E(a − b)² / E a²) = √((1/6) / (1/3)) = √½, a chance reference
    random = outcomes["checks.avg_sensitivity"].results["methods.random"].value
    assert random == pytest.approx(np.sqrt(0.5), abs=0.02)


def _gradient(model, images, target):
    images = images.clone().requires_grad_(True)
    model(images).gather(1, target[:, None]).sum().backward()
    return images.grad


def test_local_lipschitz_is_the_largest_gradient_change_over_input_change(tmp_path):
    registry = plugin_registry(PLUGINS)
    outcome = run(registry, _request("checks.local_lipschitz", tmp_path / "s.h5"))
    result = outcome.results["methods.gradient"]
    from attribench_core.runner import prepare

    ctx = prepare(registry, _request("checks.local_lipschitz", tmp_path / "s.h5"))
    model = ctx.load_model(ctx.model_name)
    images = ctx.dataset.batch(result.index).images
    target = model(images).argmax(1)
    reference = _gradient(model, images, target)
    ratios = []
    for draw in UniformNoise(0.05, 0), UniformNoise(0.05, 1), UniformNoise(0.05, 2):
        perturbed = draw.perturb(images, perturbation_generators(0, draw, result.index))
        change = (_gradient(model, perturbed, target) - reference).flatten(1).norm(dim=1)
        ratios.append(change / (perturbed - images).flatten(1).norm(dim=1))
    expected = torch.stack(ratios).amax(0).numpy()
    np.testing.assert_allclose(result.per_sample["local_lipschitz"], expected, rtol=1e-4)


@pytest.mark.parametrize("metric", [*ROBUSTNESS, "checks.input_invariance"])
def test_an_executor_finishing_in_any_order_gives_the_results_of_core_local(tmp_path, metric):
    plugins = {**PLUGINS, "x": ShuffledExecutor.plugin()}
    common = (metric, "-e", "gradient", "-e", "input_x_gradient", "--num-imgs", "6", "--batch-size", "4")
    extra = ("--samples", "2") if metric in ROBUSTNESS else ()
    local = rows(*common, *extra, "--store", str(tmp_path / "a.h5"), plugins=plugins)
    executor = ("--executor", "x.shuffled", "--shuffled-seed", "3")
    shuffled = rows(*common, *extra, "--store", str(tmp_path / "b.h5"), *executor, plugins=plugins)
    assert shuffled == local


def test_gradient_is_input_invariant_and_input_times_gradient_is_not(tmp_path):
    args = ["checks.input_invariance", "-e", "gradient", "-e", "input_x_gradient", "-e", "edge"]
    scores = rows(*args, "--num-imgs", "8", "--store", str(tmp_path / "s.h5"))
    assert {name: row["n"] for name, row in scores.items()} == dict.fromkeys(scores, 8)
    assert scores["methods.gradient"]["value"] == 1.0
    assert scores["methods.gradient"]["values"]["relative_change"] < 1e-5
    assert scores["methods.edge"]["value"] == 1.0  # an image's edges do not move with a constant shift
    assert scores["methods.input_x_gradient"]["value"] == 0.0
    assert scores["methods.input_x_gradient"]["values"]["relative_change"] > 0.5


MODEL_FILE = """\
import torch
from attribench_core.testing import tiny_model


class {name}(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.net = tiny_model(num_classes)

    def forward(self, x):
        return self.net({input})


def build(num_classes):
    return {name}(num_classes)
"""


def _user_model(tmp_path, transform: str) -> tuple[str, ...]:
    write_photos(tmp_path / "photos")
    (tmp_path / "my.py").write_text(MODEL_FILE.format(name="Mine", input=transform))
    return ("--images", str(tmp_path / "photos"), "--model", f"{tmp_path / 'my.py'}:build", "--size", "32")


def test_on_a_users_model_and_folder_normalised_first(tmp_path):
    data = _user_model(tmp_path, "x")
    args = ["-e", "gradient", "-e", "input_x_gradient", *data, "--normalize", "imagenet"]
    invariance = rows("checks.input_invariance", *args, "--store", str(tmp_path / "s.h5"))
    assert invariance["methods.gradient"]["value"] == 1.0 and invariance["methods.gradient"]["n"] == 5
    assert invariance["methods.input_x_gradient"]["value"] == 0.0
    sensitivity = rows("checks.avg_sensitivity", *args, "--samples", "2", "--store", str(tmp_path / "s.h5"))
    assert all(row["n"] == 5 and row["value"] > 0 for row in sensitivity.values())


def test_a_model_that_changes_its_input_before_its_first_layer_is_refused_in_one_line(tmp_path):
    data = _user_model(tmp_path, "x * x")
    store = tmp_path / "s.h5"
    result = cli_run("checks.input_invariance", "-e", "gradient", *data, "--store", str(store))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Usage error: Input invariance cannot test model file:")
    assert "logits on the shifted images differ by up to" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not store.exists()


def test_a_zero_shift_is_refused_when_the_command_is_read():
    message = refused_run(PLUGINS, ["checks.input_invariance", "--shift", "0"])
    assert message == "Usage error: Option 'shift' must be non-zero: a shift of 0 tests nothing.\n"
