"""SMERF's report sections: from a real tiny run of all seven settings (gates lowered), and from hand-made
payloads in the runs' format for exact numbers, merging and configurations."""

from __future__ import annotations

import json

import pytest
from attribench_smerf import models
from attribench_smerf.report import sections
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.report.content import Figure, ReportInput, Table
from attribench_core.result import Result, ResultTable, StoredRun
from attribench_core.store import AttributionStore
from attribench_core.testing import plugin_registry, using_plugins

pytest.importorskip("attribench_methods")

PNG = b"\x89PNG\r\n\x1a\n"
OPTIONS = {"variant": "cnn", "preset": "tiny", "background": "black", "background_dir": "", "blur": 7}


def blocks_by_title(section) -> dict[str, Table | Figure]:
    return {block.title: block for block in section.blocks}


def report_of(runs: list[StoredRun], store: AttributionStore, registry=None) -> ReportInput:
    return ReportInput(runs, store, registry or plugin_registry())


def test_sections_of_a_real_run_match_its_stored_aggregates(tmp_path, monkeypatch):
    """The simple settings only (two tiny models to train): the complex figures are left out."""
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "GATES", {"simple": 0.0, "complex": 0.0})
    args = ["run", "smerf.afl", "--setting", "simple", "--preset", "tiny", "-e", "edge", "-e", "random"]
    with using_plugins(entrypoints=True) as registry:
        result = CliRunner().invoke(cli, [*args, "--num-imgs", "2", "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        run = StoredRun("smerf.afl", "run1", payload)
        afl, accuracy = sections(report_of([run], AttributionStore(tmp_path / "attribench.h5"), registry))

    assert afl.title == "SMERF smerf.afl" and "maps post-processed as paper" in afl.text
    blocks = blocks_by_title(afl)
    stored = {label: r.values for label, r in run.results.items()}
    minima = blocks["PAFL over buckets: simple vs complex settings"]
    for row in minima.rows:
        values = stored[row[0]]
        assert row[1:5] == pytest.approx([values["pafl_simple_mean"], values["pafl_simple_min"], None, None])
    success = blocks["Success per setting (paper Fig. 7 top)"]
    focus = blocks["Wrong focus per setting (paper Fig. 7 bottom)"]
    assert success.columns == ["method", "simple_fr", "simple_nr"]
    for row, focus_row in zip(success.rows, focus.rows, strict=True):
        for setting, fraction, cell in zip(success.columns[1:], row[1:], focus_row[1:], strict=True):
            values = stored[row[0]]
            low, high = values[f"success_{setting}_low"], values[f"success_{setting}_high"]
            assert fraction.startswith(f"{values[f'success_{setting}']:.2f} [{low:.2f}, {high:.2f}] (")
            assert f"({values[f'wrong_focus_failures_{setting}']:.0f}/" in cell
    figures = [b for b in afl.blocks if isinstance(b, Figure)]
    assert {f.title for f in figures} == {
        "Minimum PAFL over buckets, simple vs complex (paper Fig. 2/8b)",
        "PAFL and SAFL per method, simple settings (paper Fig. 6a)",
        "Success and wrong focus per setting (paper Fig. 7)",
        "PAFL against the number of objects, simple settings (paper Fig. 6b)",
    }
    assert all(f.png.startswith(PNG) and len(f.png) > 1000 for f in figures)

    assert accuracy.title == "SMERF models: bucket-wise accuracy"
    table = accuracy.blocks[0]
    assert [row[0] for row in table.rows] == ["smerf.simple_fr", "smerf.simple_nr"]
    checks = {c["model"]: c for c in payload["models"]}
    for row in table.rows:
        check = checks[row[0]]
        assert row[1] == check["weights_hash"][:10] and row[-2:] == [check["min_bucket_accuracy"], "yes"]
        assert [a for a in row[2:-2] if a is not None] == [r["accuracy"] for r in check["table"]]


def afl_run(
    run_id: str,
    setting: str,
    buckets: dict[tuple[str, int], tuple[float | None, float | None]],
    models: list | None = None,
    **options: str,
) -> StoredRun:
    """A `smerf.afl` run in the `--json` format with one method's (PAFL, SAFL) per bucket in its `buckets`
    table, and the models' checks."""
    rows = [[s, float(b), p, q, 1.0] for (s, b), (p, q) in buckets.items()]
    table = ResultTable(["setting", "bucket", "pafl", "safl", "n"], rows)
    result = Result(float("nan"), values={"pafl_simple_fr_min": 0.3}, n=1, tables={"buckets": table})
    payload = {
        "metric": "smerf.afl",
        "higher_is_better": True,
        "options": {**OPTIONS, "postprocess": "paper", "setting": setting, **options},
        "results": [result.to_json("methods.ig")],
        "provenance": {"seed": 0},
        "models": models or [],
    }
    return StoredRun("smerf.afl", run_id, payload)


def check(model: str, digest: str, accuracy: dict[int, float] | None = None) -> dict:
    """A model's entry of `payload["models"]` (as `Resources.model_checks` saves it); unchecked without
    `accuracy` (weights given with --weights)."""
    entry = {"model": model, "source": "cache", "weights_hash": digest}
    if accuracy is not None:
        table = [{"bucket": b, "n": 10, "accuracy": a} for b, a in accuracy.items()]
        entry.update(accuracy=0.9, min_bucket_accuracy=min(accuracy.values()), passed=True, table=table)
    return entry


SIMPLE_FR = {  # buckets 7 (Box1 only: nothing to avoid), 8 and 11 (Box1 with text / with both)
    ("simple_fr", 7): (0.9, None),
    ("simple_fr", 8): (0.6, 0.2),
    ("simple_fr", 11): (0.3, 0.4),
}  # aggregates (the value `pafl_simple_fr_min` that `afl_run` adds) are recomputed, never read


def test_runs_of_one_configuration_merge_per_bucket_and_give_exact_numbers(tmp_path):
    older = afl_run("r1", "simple_fr", {**SIMPLE_FR, ("simple_fr", 8): (0.0, 0.9)})
    newer = afl_run("r2", "simple_fr", {("simple_fr", 8): (0.6, 0.2), ("complex_fr", 12): (0.05, None)})
    complex_fr = afl_run("r3", "complex_fr", {("complex_fr", 12): (0.1, 0.3)})
    (section,) = sections(report_of([older, newer, complex_fr], AttributionStore(tmp_path / "none.h5")))
    assert "3 run(s) (r1, r2, r3)" in section.text and "settings: simple_fr, complex_fr" in section.text
    blocks = blocks_by_title(section)
    row = blocks["PAFL over buckets: simple vs complex settings"].rows[0]
    assert row[:5] == pytest.approx(["methods.ig", 0.6, 0.3, 0.1, 0.1])
    assert row[5:] == [0.67, 0.46, 0.52, 0.06]  # the paper's IG
    # 8 and 11 have both roles: 8 succeeds (0.6 > 0.5), 11 has SAFL > PAFL; 12 of Complex-FR fails both.
    # Wilson 95 %: 1/2 -> 0.5 ± 0.405 = [0.09, 0.91]; 0/1 -> [0, z²/(1 + z²)] = [0, 0.79]; 1/1 -> [0.21, 1]
    assert blocks["Success per setting (paper Fig. 7 top)"].rows == [
        ["methods.ig", "0.50 [0.09, 0.91] (1/2)", "0.00 [0.00, 0.79] (0/1)"]
    ]
    assert blocks["Wrong focus per setting (paper Fig. 7 bottom)"].rows == [
        ["methods.ig", "ok (1/2) [0.09, 0.91]", "fails (1/1) [0.21, 1.00]"]
    ]
    assert sum(isinstance(b, Figure) for b in section.blocks) == 6


def test_bucket_std_and_saturation_are_over_bucket_means():
    from attribench_smerf.report import bucket_means, group_summaries, saturation_lines

    table = bucket_means([afl_run("r1", "simple_fr", SIMPLE_FR)], "pafl")["methods.ig"]
    assert list(table) == [("simple_fr", 7), ("simple_fr", 8), ("simple_fr", 11)]
    simple = group_summaries(table)["simple"]
    assert simple["std"] == pytest.approx(0.244949, abs=1e-6) and simple["buckets"] == 3
    # bucket 7 holds Box1 only, 8 Box1 and text, 11 all three objects
    assert saturation_lines({"ig": table}, "simple") == {"ig": ([1.0, 2.0, 3.0], [0.9, 0.6, 0.3])}
    assert saturation_lines({"ig": table}, "complex") == {}


def test_runs_saved_before_the_bucket_table_are_named_to_rerun(tmp_path):
    old = afl_run("r0", "simple_fr", {})
    old.payload["results"][0] = {
        "explainer": "methods.ig",
        "value": 0.5,
        "values": {"pafl_simple_fr_b7": 0.9},
    }
    (section,) = sections(
        report_of([old, afl_run("r1", "simple_fr", SIMPLE_FR)], AttributionStore(tmp_path / "x"))
    )
    assert "Left out, saved before results held per-bucket tables (rerun them): r0." in section.text
    assert "settings: simple_fr" in section.text


def test_each_configuration_gets_its_section_newest_first(tmp_path):
    runs = [
        afl_run("r1", "simple_fr", SIMPLE_FR),
        afl_run("r2", "simple_fr", SIMPLE_FR, postprocess="uniform"),
    ]
    titles = [s.title for s in sections(report_of(runs, AttributionStore(tmp_path / "none.h5")))]
    assert titles == ["SMERF smerf.afl (postprocess=uniform)", "SMERF smerf.afl (postprocess=paper)"]


def test_the_accuracy_table_holds_the_newest_check_per_model_and_weights(tmp_path):
    runs = [
        afl_run("r1", "simple_fr", SIMPLE_FR, [check("smerf.simple_fr", "a" * 64, {7: 0.5, 8: 0.6})]),
        afl_run(
            "r2",
            "simple_fr",
            SIMPLE_FR,
            [check("smerf.simple_fr", "a" * 64, {7: 0.9, 8: 0.8}), check("smerf.simple_nr", "c" * 64)],
        ),
        afl_run("r3", "simple_fr", SIMPLE_FR, [check("smerf.simple_fr", "b" * 64, {7: 0.7})]),
    ]
    *_, accuracy = sections(report_of(runs, AttributionStore(tmp_path / "none.h5")))
    assert accuracy.title == "SMERF models: bucket-wise accuracy"
    assert accuracy.blocks[0].columns[2:] == [*map(str, range(1, 13)), "min", "passed"]
    assert accuracy.blocks[0].rows == [  # buckets 1-6 are empty here, then 7 and 8
        ["smerf.simple_fr", "a" * 10, *[None] * 6, 0.9, 0.8, *[None] * 4, 0.8, "yes"],
        ["smerf.simple_fr", "b" * 10, *[None] * 6, 0.7, *[None] * 5, 0.7, "yes"],
        ["smerf.simple_nr", "c" * 10, *[None] * 13, "not checked"],
    ]


def test_nothing_to_show_without_smerf_runs(tmp_path):
    other = StoredRun("bam.mcs", "r1", {"metric": "bam.mcs", "options": {}, "results": [], "models": []})
    assert sections(report_of([other], AttributionStore(tmp_path / "none.h5"))) == []
