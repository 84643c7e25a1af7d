"""Parts of the Metric contract: the explainers a metric runs when none is named, extra result rows that
belong to no explainer, and distinct names for a result's values and curves."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from attribench_core.builtin.toy import ToyCNN
from attribench_core.cli import cli
from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.metric import AttributionRequest, Metric
from attribench_core.result import Curve, Result
from attribench_core.runner import RunRequest, run
from attribench_core.testing import plugin_registry, using_plugins


class WithDefaults(Metric):
    higher_is_better = True
    category = "sanity"
    dataset, model = "core.toy", "core.toy_cnn"
    num_imgs = 4
    default_explainers = ("test.zeros",)

    def compute(self, ctx, explainer):
        batches = list(ctx.attribution_batches(explainer))
        return Result(value=float(sum(np.abs(s.attribution).sum() for _, s in batches)), n=len(ctx.index))

    def extra_results(self, ctx):
        return {"synthetic:check": Result(value=1.0, n=1)}


@hookimpl
def register_metrics(register):
    register("with_defaults", f"{__name__}:WithDefaults", description="test metric")


@hookimpl
def register_explainers(register):
    register("zeros", f"{__name__}:ZeroExplainer", description="all-zero maps")


class ZeroExplainer(Explainer):
    def explain(self, model, inputs, targets):
        return inputs * 0


PLUGIN = types.SimpleNamespace(register_metrics=register_metrics, register_explainers=register_explainers)


def test_default_explainers_and_extra_rows(tmp_path):
    registry = plugin_registry({"test": PLUGIN})
    outcome = run(registry, RunRequest("test.with_defaults", store=tmp_path / "s.h5"))
    assert list(outcome.results) == ["test.zeros", "synthetic:check"]
    assert outcome.results["test.zeros"].value == 0.0
    assert [r["explainer"] for r in outcome.to_json()["results"]] == ["test.zeros", "synthetic:check"]


def test_a_curve_may_not_hide_a_value_of_the_same_name():
    result = Result(value=0.5, values={"auc": 0.5}, curves={"auc": Curve("x", [0.0, 1.0], [0.0, 1.0])})
    with pytest.raises(ValueError, match="both named auc"):
        result.to_json("methods.ig")


def test_the_cli_runs_the_default_explainers_when_none_is_named():
    import abfixture.plugin  # more explainers installed: "all" would run them too

    with using_plugins({"test": PLUGIN, "t": abfixture.plugin}):
        done = CliRunner().invoke(cli, ["run", "test.with_defaults", "--json"])
    assert done.exit_code == 0, done.output
    assert [r["explainer"] for r in json.loads(done.stdout)["results"]] == ["test.zeros", "synthetic:check"]


class OtherToyCNN(ToyCNN):
    recipe = replace(ToyCNN.recipe, lr=2e-3)  # other weights, same architecture


class NoiseAcrossPairs(Metric):
    """Stores the maps of one explainer on the same images for three (dataset, model) pairs."""

    higher_is_better = True
    category = "sanity"
    dataset, model = "core.toy", "core.toy_cnn"
    num_imgs = 4
    pairs = (("core.toy", "core.toy_cnn"), ("core.toy", "test.other_cnn"), ("test.toy_again", "core.toy_cnn"))

    def requests(self, ctx):
        index = tuple(map(int, ctx.index))
        return [AttributionRequest(d, m, index) for d, m in self.pairs]

    maps: ClassVar[list[np.ndarray]] = []

    def compute(self, ctx, explainer):
        NoiseAcrossPairs.maps = [
            np.concatenate([s.attribution for s in ctx.stored_batches(explainer, dataset=d, model=m)])
            for d, m in self.pairs
        ]
        return Result(value=0.0, n=len(ctx.index))


@hookimpl
def register_datasets(register):
    register("toy_again", "attribench_core.builtin.toy:make_toy", description="core.toy under another name")


@hookimpl
def register_models(register):
    register("other_cnn", f"{__name__}:OtherToyCNN", description="core.toy_cnn trained with another lr")


@hookimpl(specname="register_metrics")
def register_noise_metric(register):
    register("noise", f"{__name__}:NoiseAcrossPairs", description="one explainer's maps on three pairs")


NOISE = types.SimpleNamespace(
    register_datasets=register_datasets,
    register_models=register_models,
    register_metrics=register_noise_metric,
)


def test_a_random_explainer_draws_anew_for_each_model_and_each_version_of_the_images(tmp_path):
    """A random baseline is a chance reference only if the two sides of a comparison get independent maps:
    drawn from (seed, batch) alone, BAM's MCS of Random was exactly 0 and its IIR 1.0."""
    import abfixture.plugin

    registry = plugin_registry({"test": NOISE, "t": abfixture.plugin})
    run(registry, RunRequest("test.noise", ["t.noise"], store=tmp_path / "s.h5"))
    first = NoiseAcrossPairs.maps
    assert not np.array_equal(first[0], first[1])  # another model
    assert not np.array_equal(first[0], first[2])  # another version of the same images
    run(registry, RunRequest("test.noise", ["t.noise"], store=tmp_path / "again.h5"))
    assert all(
        np.array_equal(a, b) for a, b in zip(first, NoiseAcrossPairs.maps, strict=True)
    )  # same seed, same maps
