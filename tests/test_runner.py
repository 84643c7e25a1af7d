"""The runner's stages on their own: `prepare` resolves and loads once, `plan` only reads, `execute` writes
the store and a later plan resumes where it stopped."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import abfixture.plugin
import numpy as np
import pytest

from attribench_core import hookimpl, runner
from attribench_core.cache import home
from attribench_core.runner import RunRequest, execute, plan, prepare, run
from attribench_core.testing import plugin_registry


class SmallToy:
    """`core.toy`'s factory registered again with a bound size."""

    @hookimpl
    def register_datasets(self, register):
        register("small_toy", "attribench_core.builtin.toy:make_toy", kwargs={"size": 40})


@pytest.fixture
def registry():
    return plugin_registry({"t": abfixture.plugin, "k": SmallToy()})


def _request(tmp_path, **changes) -> RunRequest:
    request = RunRequest("core.relevance_mass", ["t.grad", "t.noise"], num_imgs=6, batch_size=2)
    return replace(request, **{"store": tmp_path / "store.h5", **changes})


def test_prepare_resolves_each_name_once_and_loads_each_model_once(registry, tmp_path, monkeypatch):
    asked = Counter()
    resolve = registry.resolve

    def counted_resolve(kind, text):
        asked[kind, text] += 1
        return resolve(kind, text)

    obtained = Counter()
    obtain = runner.obtain_model

    def counted_obtain(model, name, *args, **kwargs):
        obtained[name] += 1
        return obtain(model, name, *args, **kwargs)

    monkeypatch.setattr(registry, "resolve", counted_resolve)
    monkeypatch.setattr(runner, "obtain_model", counted_obtain)
    ctx = prepare(registry, _request(tmp_path))
    assert obtained == {"core.toy_cnn": 1}
    execute(ctx, plan(ctx))
    for label in ctx.explainers:
        ctx.metric.compute(ctx, label)
    assert asked and max(asked.values()) == 1, asked
    assert obtained == {"core.toy_cnn": 1}
    asked.clear()
    outcome = run(registry, _request(tmp_path, store=tmp_path / "again.h5"))  # all stages and the results
    assert outcome.metric == "core.relevance_mass" and max(asked.values()) == 1, asked


def test_plan_reads_only_and_names_every_missing_batch(registry, tmp_path):
    ctx = prepare(registry, _request(tmp_path))
    cached = sorted(home().rglob("*"))
    tasks = plan(ctx)
    assert sorted(home().rglob("*")) == cached  # nothing trained or generated
    assert [p.name for p in tmp_path.iterdir()] in ([], ["store.h5.lock"])  # a reader's lock, no store
    assert [t.explainer.label for t in tasks] == ["t.grad", "t.noise"]
    for task in tasks:
        assert [b.tolist() for b in task.batches] == [ctx.index[i : i + 2].tolist() for i in (0, 2, 4)]
        assert task.key == ctx.group_key(ctx.dataset_name, ctx.model_name, task.explainer, ctx.metric.target)
        assert task.provenance["explainer"] == task.explainer.entry.qualified
    again = plan(ctx)
    assert [(t.key, [b.tolist() for b in t.batches]) for t in again] == [
        (t.key, [b.tolist() for b in t.batches]) for t in tasks
    ]


def test_execute_writes_the_store_and_a_new_plan_resumes_where_it_stopped(registry, tmp_path):
    ctx = prepare(registry, _request(tmp_path))
    first = plan(ctx)[0]
    done = execute(ctx, [replace(first, batches=first.batches[:1])])
    assert done.computed == 2 and not done.failures
    resumed = plan(prepare(registry, _request(tmp_path)))
    assert [(t.explainer.label, len(t.batches)) for t in resumed] == [("t.grad", 2), ("t.noise", 3)]
    assert [b.tolist() for b in resumed[0].batches] == [b.tolist() for b in first.batches[1:]]
    ctx = prepare(registry, _request(tmp_path))
    assert execute(ctx, plan(ctx)).computed == 4 + 6
    assert plan(ctx) == []

    whole = prepare(registry, _request(tmp_path, store=tmp_path / "whole.h5"))
    execute(whole, plan(whole))
    key = ctx.group_key(ctx.dataset_name, ctx.model_name, ctx.explainers["t.grad"], ctx.metric.target)
    with ctx.store.reader(key) as resumed_maps, whole.store.reader(key) as whole_maps:
        np.testing.assert_array_equal(
            resumed_maps.read(ctx.index).attribution, whole_maps.read(ctx.index).attribution
        )


def test_a_dataset_registered_with_arguments_runs_and_keys_without_them(registry, tmp_path):
    ctx = prepare(registry, _request(tmp_path, dataset="small_toy"))
    assert ctx.dataset_name == "k.small_toy" and len(ctx.dataset) == 40
    assert ctx.resources.options("k.small_toy") == {}  # the bound size is the name's, not an option
    assert ctx.resources.options("core.toy") == {"size": None}
    assert ctx.resources.dataset_key("k.small_toy").startswith("k.small_toy@")
