"""Executors: the contract (`map` in any order, `in_order`), the CLI's executor options, and a run whose
batches finish in a shuffled order giving exactly the results and maps of `core.local`."""

from __future__ import annotations

import json

import abfixture.plugin
import numpy as np
import pytest
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.errors import ParameterError, UsageProblem
from attribench_core.executor import Failed, LocalExecutor, in_order
from attribench_core.runner import RunRequest, worker_context
from attribench_core.store import AttributionStore, GroupKey
from attribench_core.testing import ShuffledExecutor, using_plugins


def _square(ctx: object, item: int) -> int:
    if item < 0:
        raise ValueError(f"negative item {item}")
    return item * item


def test_in_order_gives_values_in_item_order_whatever_order_they_finish_in():
    outcomes = iter([(2, 4), (0, 0), (3, 9), (1, 1)])
    assert list(in_order(outcomes)) == [0, 1, 4, 9]


def test_in_order_raises_the_first_failure_in_item_order():
    error = ValueError("bad item")
    with pytest.raises(ValueError, match="bad item"):
        list(in_order(iter([(1, Failed(error)), (0, 7)])))


def test_the_shuffled_executor_computes_every_item_once_and_reports_failures():
    executor = ShuffledExecutor(seed=3)
    outcomes = dict(executor.map(_square, [1, 2, -3, 4], ctx=None))
    assert [outcomes[p] for p in (0, 1, 3)] == [1, 4, 16]
    assert isinstance(outcomes[2], Failed) and outcomes[2].reason == "ValueError: negative item -3"
    order = [p for p, _ in ShuffledExecutor(seed=3).map(_square, range(20), ctx=None)]
    assert sorted(order) == list(range(20)) and order != list(range(20))


def test_local_refuses_workers_and_executors_refuse_unknown_options():
    with pytest.raises(UsageProblem, match="--executor ray"):
        LocalExecutor(workers=2)
    with pytest.raises(ParameterError, match="Did you mean seed"):
        ShuffledExecutor(sed=1)


def _run(store: str, *executor: str) -> dict:
    args = ["run", "core.relevance_mass", "-e", "t.grad", "-e", "t.noise", "--num-imgs", "24"]
    result = CliRunner().invoke(cli, [*args, "--batch-size", "4", "--store", store, "--json", *executor])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _maps(path: str) -> dict[str, np.ndarray]:
    store = AttributionStore(path)
    keys = [GroupKey(*g["path"].split("/")[1:]) for g in store.groups() if g["kind"] == "attributions"]
    return {key.path: store.read(key, store.completed(key)).attribution for key in keys}


def test_batches_finishing_in_any_order_give_the_results_and_maps_of_core_local():
    with using_plugins({"t": abfixture.plugin, "x": ShuffledExecutor.plugin()}):
        local = _run("local.h5")
        shuffled = _run("shuffled.h5", "--executor", "x.shuffled", "--shuffled-seed", "5")
    assert shuffled["results"] == local["results"]
    maps, reference = _maps("shuffled.h5"), _maps("local.h5")
    assert maps.keys() == reference.keys() and len(maps) == 2
    for path, values in reference.items():
        assert np.array_equal(maps[path], values), path


def test_an_explainer_failing_under_another_executor_is_reported_and_the_others_go_on():
    with using_plugins({"t": abfixture.plugin, "x": ShuffledExecutor.plugin()}):
        args = ["run", "core.relevance_mass", "-e", "t.grad", "-e", "t.broken", "--num-imgs", "8"]
        result = CliRunner().invoke(cli, [*args, "--batch-size", "4", "--executor", "x.shuffled", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["explainer"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["t.grad"]["n"] == 8
    assert any("explainer failed" in reason for reason in rows["t.broken"]["skipped_reasons"])


def test_unknown_executor_is_one_line_with_a_suggestion():
    with using_plugins({"t": abfixture.plugin}):
        result = CliRunner().invoke(cli, ["run", "core.relevance_mass", "--executor", "core.locl"])
    assert result.exit_code != 0
    assert "core.local" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_worker_never_trains_a_model_missing_from_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "empty-home"))
    missing = pytest.raises(UsageProblem, match="not in this worker's cache")
    with using_plugins({"t": abfixture.plugin}), missing:
        worker_context(RunRequest("core.relevance_mass", explainers=["t.grad"], num_imgs=4))
    assert not list((tmp_path / "empty-home").glob("models/*/*.pt"))
