"""Two optional parts of the Metric contract: the explainers a metric runs when none is named, and extra
result rows that belong to no explainer."""

from __future__ import annotations

import types

import numpy as np

from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.metric import Metric
from attribench_core.result import Result
from attribench_core.runner import RunRequest, run
from attribench_core.testing import plugin_registry


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


def test_default_explainers_and_extra_rows(tmp_path):
    plugin = types.SimpleNamespace(register_metrics=register_metrics, register_explainers=register_explainers)
    registry = plugin_registry({"test": plugin})
    outcome = run(registry, RunRequest("test.with_defaults", store=tmp_path / "s.h5"))
    assert list(outcome.results) == ["test.zeros", "synthetic:check"]
    assert outcome.results["test.zeros"].value == 0.0
    assert [r["explainer"] for r in outcome.to_json()["results"]] == ["test.zeros", "synthetic:check"]
