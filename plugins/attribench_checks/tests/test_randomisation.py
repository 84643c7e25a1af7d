import json
import textwrap
from dataclasses import replace
from types import SimpleNamespace

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
import torch
from attribench_checks.layers import RandomiseLayers
from attribench_checks.randomisation import (
    CONSTANT_MAP,
    MPRT,
    RandomLogit,
    cut_points,
    normalise_for_ssim,
    plan_steps,
    spearman_abs,
    spearman_signed,
    ssim_abs,
)
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.runner import RunRequest, execute, plan, prepare, run
from attribench_core.testing import ShuffledExecutor, plugin_registry, refused_run, using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
TOY_LAYERS = ["classifier", "features.3", "features.0"]  # core.toy_cnn's, from the logits down


def test_normalise_for_ssim_scales_to_the_99th_percentile_and_clips():
    maps = np.arange(10.0).reshape(1, 2, 5)
    # p99 of 0..9 by linear interpolation: 0.99 · 9 = 8.91
    expected = np.minimum(np.arange(10.0) / 8.91, 1.0).reshape(1, 2, 5)
    np.testing.assert_allclose(normalise_for_ssim(maps), expected)
    np.testing.assert_allclose(normalise_for_ssim(maps + 5), expected)  # from the map's minimum
    np.testing.assert_array_equal(normalise_for_ssim(np.full((1, 2, 5), 3.0)), np.zeros((1, 2, 5)))


def test_spearman_of_abs_and_of_signed_maps():
    a = np.array([[1.0, -2.0], [3.0, 0.0]]).reshape(1, 1, 2, 2)
    b = np.array([[-1.0, 2.0], [3.0, 0.0]]).reshape(1, 1, 2, 2)
    assert spearman_abs(a, b) == pytest.approx([1.0])  # equal |a|
    # signed ranks (3, 1, 4, 2) and (1, 3, 4, 2): Σ products of deviations from 2.5 is 1, Σ squares 5
    assert spearman_signed(a, b) == pytest.approx([0.2])
    two_channels = np.concatenate([a, -a], axis=1)  # |a| summed over channels: 2|a|
    assert spearman_abs(two_channels, a) == pytest.approx([1.0])


def test_ssim_abs_is_one_for_maps_equal_up_to_sign_and_scale():
    a = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    np.testing.assert_allclose(ssim_abs(a, -3 * a), [1.0, 1.0])
    assert (ssim_abs(a, a[::-1]) < 0.5).all()


@pytest.mark.parametrize(
    ("layers", "steps", "cuts"),
    [(3, 0, [1, 2, 3]), (3, 3, [1, 2, 3]), (3, 5, [1, 2, 3]), (4, 2, [2, 4]), (41, 5, [9, 17, 25, 33, 41])],
)
def test_cut_points_spread_the_steps_evenly_and_end_with_every_layer(layers, steps, cuts):
    assert cut_points(layers, steps) == cuts


def test_cascading_steps_add_layers_from_the_top_and_independent_steps_take_one():
    layers = ["conv1", "conv2", "fc"]  # forward order
    cascading = plan_steps(layers, "cascading", 0)
    assert [(s.k, s.layer) for s in cascading] == [(1, "fc"), (2, "conv2"), (3, "conv1")]
    assert [s.alteration for s in cascading] == [
        RandomiseLayers(("fc",)),
        RandomiseLayers(("fc", "conv2")),
        RandomiseLayers(("fc", "conv2", "conv1")),
    ]
    independent = plan_steps(layers, "independent", 2)
    assert [(s.k, s.layer, s.alteration.layers) for s in independent] == [
        (2, "conv2", ("conv2",)),
        (3, "conv1", ("conv1",)),
    ]


class PairedMaps:
    """The part of a metric context that RandomLogit reads: the plain maps and those of a variant."""

    def __init__(self, plain, other):
        def stored(attribution, nonfinite):
            return SimpleNamespace(
                index=np.arange(len(attribution)), attribution=attribution, nonfinite=nonfinite
            )

        self.plain, self.other = stored(*plain), stored(*other)

    def stored_batches(self, explainer, **variant):
        yield self.other if variant else self.plain

    def rng(self, name):
        return np.random.default_rng(0)


def test_maps_that_cannot_be_compared_are_skipped_with_their_reason():
    maps = np.random.default_rng(0).normal(size=(4, 1, 8, 8))
    plain = maps.copy()
    plain[1, 0, 0, 0] = np.nan
    plain[2] = 0.0
    other = maps.copy()
    other[3] = 1.0  # a constant map has no ranks
    no = np.zeros(4, dtype=bool)
    ctx = PairedMaps((plain, np.array([False, True, False, False])), (other, no))
    result = RandomLogit(similarity="spearman_abs").compute(ctx, "e")
    assert result.skipped == {"non-finite attribution": 1, "all-zero map": 1, CONSTANT_MAP: 1}
    np.testing.assert_array_equal(result.index, [0])
    assert result.value == pytest.approx(1.0)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One ATTRIBENCH_HOME for this module: the toy model trains once."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("home")
        patch.setenv("ATTRIBENCH_HOME", str(path))
        yield path


def cli_rows(home, tmp_path, *args):
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(
            cli,
            ["run", *args, "--json", "--store", str(tmp_path / "s.h5")],
            env={"ATTRIBENCH_HOME": str(home)},
        )
    assert result.exit_code == 0, result.output
    return {row["explainer"]: row for row in json.loads(result.stdout)["results"]}


def test_gradient_maps_pass_mprt_and_edge_detection_fails(home, tmp_path):
    rows = cli_rows(home, tmp_path, "checks.mprt", "-e", "gradient", "-e", "edge", "--num-imgs", "8")
    gradient, edge = rows["methods.gradient"], rows["methods.edge"]
    assert gradient["n"] == edge["n"] == 8
    assert gradient["tables"]["layers"]["rows"] == [[1, "classifier"], [2, "features.3"], [3, "features.0"]]
    for name in ("spearman_abs", "spearman", "ssim"):
        curve = gradient["values"][name]
        assert curve["x_name"] == "layers randomised" and curve["x"] == [1, 2, 3]
        assert edge["values"][name]["y"] == pytest.approx([1, 1, 1])  # the model is not used at all
    for name in ("spearman_abs", "ssim"):  # similarity falls with randomisation
        y = gradient["values"][name]["y"]
        assert y[-1] < min(y[0], 0.6)
    assert abs(gradient["values"]["spearman"]["y"][-1]) < 0.2  # signed maps: no correlation left
    spearman_abs_curve = gradient["values"]["spearman_abs"]["y"]
    assert gradient["value"] == pytest.approx(np.mean(spearman_abs_curve))
    assert gradient["uncertainty"]["low"] < gradient["value"] < gradient["uncertainty"]["high"]
    assert edge["value"] == pytest.approx(1.0)


def test_the_steps_follow_mode_and_steps(home, tmp_path):
    registry = plugin_registry(PLUGINS)
    request = RunRequest("checks.mprt", ["methods.gradient"], num_imgs=4, store=tmp_path / "s.h5")
    independent = prepare(registry, replace(request, options={"mode": "independent", "steps": 2}))
    assert [r.alteration for r in independent.requests] == [
        None,
        RandomiseLayers(("features.3",)),
        RandomiseLayers(("features.0",)),
    ]
    outcome = run(registry, replace(request, options={"mode": "independent", "steps": 2}))
    result = outcome.results["methods.gradient"]
    assert result.curves["ssim"].x == [2.0, 3.0]
    assert result.tables["layers"].rows == [[2.0, "features.3"], [3.0, "features.0"]]
    cascading = prepare(registry, request)
    assert [r.alteration for r in cascading.requests][1:] == [
        RandomiseLayers(tuple(TOY_LAYERS[:k])) for k in (1, 2, 3)
    ]


def test_an_unknown_mode_is_a_usage_error():
    output = refused_run(PLUGINS, ["checks.mprt", "-e", "gradient", "--mode", "sideways"])
    assert "mode" in output and "cascading" in output


def _results(outcome):
    return {label: result.to_json(label) for label, result in outcome.results.items()}


def test_the_run_leaves_its_model_untouched_and_the_same_seed_gives_the_same_numbers(home, tmp_path):
    registry = plugin_registry(PLUGINS)
    request = RunRequest(
        "checks.mprt", ["methods.gradient", "methods.edge"], num_imgs=6, batch_size=4, store=tmp_path / "a.h5"
    )
    ctx = prepare(registry, request)
    model = ctx.load_model(ctx.model_name)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    execute(ctx, plan(ctx))
    first = {label: ctx.metric.compute(ctx, label) for label in ctx.explainers}
    assert all(torch.equal(weights[k], v) for k, v in ctx.load_model(ctx.model_name).state_dict().items())
    again = run(registry, replace(request, store=tmp_path / "b.h5"))
    assert _results(again) == {label: result.to_json(label) for label, result in first.items()}


def test_a_shuffled_executor_gives_the_local_numbers(home, tmp_path):
    registry = plugin_registry({**PLUGINS, "x": ShuffledExecutor.plugin()})
    request = RunRequest(
        "checks.mprt", ["methods.gradient"], num_imgs=6, batch_size=4, store=tmp_path / "a.h5"
    )
    local = run(registry, request).results["methods.gradient"]
    shuffled = run(
        registry, replace(request, store=tmp_path / "b.h5", batch_size=3, executor="x.shuffled")
    ).results["methods.gradient"]
    np.testing.assert_array_equal(shuffled.index, local.index)
    for name, curve in local.curves.items():
        np.testing.assert_allclose(shuffled.curves[name].y, curve.y, atol=1e-6)  # batched convolutions
    assert shuffled.value == pytest.approx(local.value, abs=1e-6)


USER_NET = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        '''A residual net with BatchNorm whose shortcut is registered last and called first.'''

        def __init__(self, num_classes):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(8)
            self.shortcut = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8))
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            identity = self.shortcut(x)
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return self.fc(torch.relu(out + identity).mean(dim=(2, 3)))


    def build(num_classes):
        torch.manual_seed(0)
        return Net(num_classes)
    """
)


def test_mprt_runs_on_a_users_model_in_its_forward_order(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(USER_NET)
    rows = cli_rows(
        home, tmp_path, "checks.mprt", "-e", "gradient", "--model", "net.py:build", "--num-imgs", "4"
    )
    gradient = rows["methods.gradient"]
    layers = [layer for _, layer in gradient["tables"]["layers"]["rows"]]
    forward = ["shortcut.0", "shortcut.1", "conv1", "bn1", "conv2", "bn2", "fc"]
    assert layers == forward[::-1]
    assert gradient["n"] == 4 and np.isfinite(gradient["value"])


def test_random_logit_is_one_for_edge_maps_and_lower_for_gradients(home, tmp_path):
    rows = cli_rows(home, tmp_path, "checks.random_logit", "-e", "gradient", "-e", "edge", "--num-imgs", "8")
    assert rows["methods.edge"]["value"] == pytest.approx(1.0)  # the same map whatever the class
    assert rows["methods.gradient"]["value"] < 0.97
    assert set(rows["methods.gradient"]["values"]) == {"ssim"}
    signed = cli_rows(
        home, tmp_path, "checks.random_logit", "-e", "gradient", "--num-imgs", "8", "--similarity", "spearman"
    )["methods.gradient"]
    assert set(signed["values"]) == {"spearman"}
    assert signed["value"] < 0.5  # on the toy CNN the class changes the gradient's signs more than |a|


def test_the_checks_register_as_randomisation_metrics():
    registry = plugin_registry({"checks": attribench_checks.plugin})
    found = {e.name: e.meta["category"] for e in registry.entries("metric") if e.namespace == "checks"}
    assert found["mprt"] == found["random_logit"] == "randomisation"
    assert not MPRT.higher_is_better and not RandomLogit.higher_is_better
