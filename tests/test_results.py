"""One typed result from metric to report: `Result` to JSON and arrays and back, the run's direction saved
with it, strict JSON (no NaN anywhere), the store's read API and the reports' grouping of runs."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attribench_core import Explainer, hookimpl
from attribench_core.cli import cli
from attribench_core.report.grouping import differing_options, group_runs, newest_group
from attribench_core.result import (
    Curve,
    Result,
    ResultTable,
    StoredRun,
    Uncertainty,
    json_safe,
    json_text,
    mean_result,
    run_arrays,
)
from attribench_core.store import AttributionStore
from attribench_core.testing import using_plugins

NAN = float("nan")


def _raise(constant: str) -> None:
    raise ValueError(f"JSON holds {constant}")


def strict_loads(text: str):
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=_raise)


def round_trip(result: Result) -> Result:
    """The result as `StoredRun.results` reads it back: through JSON text and its arrays."""
    return Result.from_json(strict_loads(json_text(result.to_json("e"))), result.arrays())


SHAPES = {
    "mean with a skipped sample": mean_result(
        "mass", np.array([0.2, NAN, 0.7, 0.4]), np.arange(4), np.random.default_rng(0), rate=False
    ),
    "rate": mean_result(
        "hit", np.array([1.0, 0.0, 1.0]), np.array([3, 5, 9]), np.random.default_rng(0), rate=True
    ),
    "no finite sample": mean_result("mass", np.array([NAN, NAN]), np.arange(2), np.random.default_rng(0)),
    "failed explainer": Result(value=NAN, skipped={"explainer failed: boom": 4}),
    "curves and a spread": Result(
        value=0.25,
        values={"auc": 0.25, "inf": math.inf},
        curves={"morf": Curve("fraction removed", [0.0, 0.5, 1.0], [0.9, NAN, 0.1])},
        uncertainty=Uncertainty("std", 0.2, 0.3),
        n=3,
    ),
    "table": Result(
        value=0.5,
        tables={"buckets": ResultTable(["setting", "bucket", "score"], [["a", 1.0, 0.5], ["b", 2.0, NAN]])},
        per_sample={"score": np.array([0.5, NAN], np.float32), "bucket": np.array([1.0, 2.0])},
        index=np.array([4, 7]),
        n=1,
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_result_reads_back_equal_from_its_json_and_arrays(shape):
    result = SHAPES[shape]
    back = round_trip(result)
    assert back == result and back.to_json("e") == result.to_json("e")
    assert back.curves.keys() == result.curves.keys() and back.tables.keys() == result.tables.keys()
    assert back.n_skipped == result.n_skipped and back.small_n == result.small_n


def test_results_that_differ_are_not_equal():
    a = SHAPES["table"]
    changed = Result.from_json(a.to_json("e"), {**a.arrays(), "score": np.array([0.5, 0.6])})
    assert changed != a and SHAPES["rate"] != SHAPES["mean with a skipped sample"]


def test_a_null_number_reads_back_as_nan():
    back = round_trip(SHAPES["no finite sample"])
    assert math.isnan(back.value) and math.isnan(back.uncertainty.low) and math.isnan(back.uncertainty.high)
    assert math.isnan(round_trip(SHAPES["table"]).tables["buckets"].records()[1]["score"])


def test_a_per_sample_value_may_not_take_the_name_of_the_indices():
    with pytest.raises(ValueError, match="may not be named 'index'"):
        Result(1.0, per_sample={"index": np.zeros(2)}).arrays()


def test_json_safe_turns_every_non_finite_number_into_null():
    value = {
        "a": [np.float32("nan"), (math.inf, 1)],
        2: {"b": -math.inf, "c": np.int64(3), "d": np.array([NAN])},
    }
    assert json_safe(value) == {"a": [None, [None, 1]], "2": {"b": None, "c": 3, "d": [None]}}
    assert strict_loads(json_text(value)) == json_safe(value)


class NonFinite(Explainer):
    """A map of NaNs: no image of this explainer can be scored."""

    def explain(self, model, inputs, targets):
        return torch.full_like(inputs, NAN)


@hookimpl
def register_explainers(register):
    register("nan", f"{__name__}:NonFinite", description="NaN maps")


def test_run_json_holds_null_where_an_explainer_has_no_finite_sample(tmp_path, monkeypatch):
    """`--json`, `--out`, `store ls --json` and `store show` of the run parse as strict JSON; the interval
    of the explainer without a finite sample is null, as is its value."""
    import abfixture.plugin

    monkeypatch.chdir(tmp_path)
    store = ["--store", str(tmp_path / "s.h5")]
    with using_plugins(
        {"t": abfixture.plugin, "x": types.SimpleNamespace(register_explainers=register_explainers)}
    ):
        args = ["run", "core.relevance_mass", "-e", "x.nan", "-e", "t.grad", "--num-imgs", "4", "--json"]
        result = CliRunner().invoke(cli, [*args, "--out", "out.json", *store])
        assert result.exit_code == 0, result.output
        payload = strict_loads(result.stdout)
        assert strict_loads((tmp_path / "out.json").read_text()) == payload
        listed = CliRunner().invoke(cli, ["store", "ls", "--json", *store])
        run_path = next(g["path"] for g in strict_loads(listed.stdout) if g["kind"] == "result")
        shown = strict_loads(CliRunner().invoke(cli, ["store", "show", run_path, *store]).stdout)
    nan = next(r for r in payload["results"] if r["explainer"] == "x.nan")
    assert nan["value"] is None and nan["uncertainty"]["low"] is None and nan["uncertainty"]["high"] is None
    assert nan["n"] == 0 and nan["skipped_reasons"] == {"non-finite attribution": 4}
    assert payload["higher_is_better"] is True
    assert shown["payload"] == payload


def _run(metric: str, run_id: str, labels: dict[str, float], **options) -> StoredRun:
    """A run of `metric` on core.toy with one result per label (headline `value`, 2 per-sample values)."""
    results = {
        label: Result(value, per_sample={"s": np.array([value, value])}, index=np.array([0, 1]), n=2)
        for label, value in labels.items()
    }
    dataset = options.pop("dataset", "core.toy")
    payload = {
        "metric": metric,
        "higher_is_better": False,
        "options": options,
        "results": [r.to_json(label) for label, r in results.items()],
        "provenance": {"dataset": dataset, "model": "core.toy_cnn", "dataset_source": f"{dataset} images"},
        "models": [],
    }
    return StoredRun(metric, run_id, payload, run_arrays(results))


def test_the_store_reads_runs_back_typed_oldest_first_and_by_metric(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    assert store.runs() == []  # no store yet: nothing, and nothing created
    assert not store.path.exists()
    runs = [_run("x.b", "2", {"m.e": 0.5}), _run("x.a", "1", {"m.e": 0.1, "ref": NAN}), _run("x.a", "3", {})]
    store.merge(runs)
    assert [(r.metric, r.run_id) for r in store.runs()] == [("x.a", "1"), ("x.b", "2"), ("x.a", "3")]
    first, _ = store.runs("x.a")
    assert first.higher_is_better is False and first.provenance["dataset"] == "core.toy"
    assert first.results == runs[1].results
    assert first.results["m.e"].per_sample["s"].tolist() == [0.1, 0.1]
    assert first.results["m.e"].index.tolist() == [0, 1]
    assert store.runs("x.c") == []


def test_arrays_go_to_the_result_whose_label_they_start_with(tmp_path):
    """Labels and per-sample names may hold a slash (a parameter that is a path, a nested name): arrays are
    matched by the whole label, also after the store nested them as HDF5 groups."""
    results = {
        "m.e:root=/data/x": Result(0.5, per_sample={"by/part": np.array([0.5])}, index=np.array([3])),
        "m.e": Result(0.2, per_sample={"s": np.array([0.2])}),
    }
    payload = {"metric": "x.a", "results": [r.to_json(label) for label, r in results.items()]}
    store = AttributionStore(tmp_path / "s.h5")
    store.merge([StoredRun("x.a", "1", payload, run_arrays(results))])
    (saved,) = store.runs()
    assert saved.results == results


def test_a_run_saved_before_tables_and_directions_reads_with_defaults():
    item = {"explainer": "m.e", "value": 0.5, "values": {"v": None}, "uncertainty": None, "n": 3}
    old = StoredRun("x.a", "1", {"metric": "x.a", "results": [item]})
    (result,) = old.results.values()
    assert result.tables == {} and result.skipped == {} and math.isnan(result.values["v"])
    assert old.higher_is_better is None and old.options == {} and old.models == []


def test_runs_group_by_metric_options_and_data_newest_result_per_label():
    runs = [
        _run("x.a", "1", {"m.e": 0.1, "m.f": 0.2}, k=1),
        _run("x.a", "2", {"m.e": 0.3}, k=1),
        _run("x.a", "3", {"m.e": 0.9}, k=2),
        _run("x.a", "4", {"m.e": 0.4}, k=1, dataset="core.images"),
        _run("x.b", "5", {"m.e": 0.0}, k=1),
    ]
    groups = group_runs(runs)
    assert [(g.metric, g.options, g.dataset, g.run_ids) for g in groups] == [
        ("x.a", {"k": 1}, "core.images", ["4"]),
        ("x.a", {"k": 1}, "core.toy", ["1", "2"]),
        ("x.a", {"k": 2}, "core.toy", ["3"]),
        ("x.b", {"k": 1}, "core.toy", ["5"]),
    ]
    assert [g.name for g in groups] == [
        "x.a (k=1; on core.images / core.toy_cnn)",
        "x.a (k=1; on core.toy / core.toy_cnn)",
        "x.a (k=2; on core.toy / core.toy_cnn)",
        "x.b",
    ]
    assert {label: r.value for label, r in groups[1].results.items()} == {"m.e": 0.3, "m.f": 0.2}
    assert groups[1].higher_is_better is False and groups[0].source == "core.images images"
    assert newest_group(groups).run_ids == ["5"] and newest_group([]) is None
    assert (
        differing_options(groups[2], groups[:3]) == {"k": 2}
        and differing_options(groups[3], groups[3:]) == {}
    )


def test_grouping_may_ignore_options_and_data():
    runs = [
        _run("x.a", "1", {"m.e": 0.1}, k=1, setting="s1"),
        _run("x.a", "2", {"m.e": 0.2}, k=1, setting="s2", dataset="core.images"),
    ]
    assert len(group_runs(runs)) == 2 and len(group_runs(runs, ignore=("setting",))) == 2
    (group,) = group_runs(runs, ignore=("setting",), by_data=False)
    assert group.options == {"k": 1} and (group.dataset, group.model) == (None, None)
    assert group.run_ids == ["1", "2"] and group.name == "x.a"
