"""Parts of the Metric contract: the explainers a metric runs when none is named, extra result rows that
belong to no explainer, and distinct names for a result's values and curves."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.metric import Metric
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
