"""The report's paper-ready parts: the method × metric matrix and the exports (CSV, LaTeX, JSON) on a tiny
store written by hand, the paired test and Holm's correction by hand, the per-image drill-down on real runs,
readable dataset options, and the page checked in headless Chromium when one is installed."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import abfixture.plugin
import numpy as np
import pytest
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.report import (
    agreement,
    drilldown,
    export,
    leaderboard,
    matrix,
    paired,
    provenance,
)
from attribench_core.report.assemble import build_sections
from attribench_core.report.content import Figure
from attribench_core.report.reading import read_input
from attribench_core.result import StoredRun, json_safe
from attribench_core.runner import RunRequest, run
from attribench_core.store import AttributionStore, GroupKey
from attribench_core.testing import plugin_registry, using_plugins

ROOT = Path(__file__).resolve().parents[1]
PLACE = {"dataset": "core.toy", "model": "core.toy_cnn", "seed": 7}
ODD = "t.odd_one:note=50%&up"  # an explainer label with LaTeX's special characters


def result(label: str, value: float | None, low: float | None = None, high: float | None = None) -> dict:
    uncertainty = None if low is None else {"kind": "bootstrap_ci95", "low": low, "high": high}
    return {"explainer": label, "value": value, "uncertainty": uncertainty, "n": 4, "n_skipped": 0}


def record(metric: str, run_id: str, results: list[dict], arrays: dict[str, np.ndarray]) -> StoredRun:
    payload = {"metric": metric, "options": {}, "results": results, "provenance": PLACE}
    return StoredRun(metric, run_id, payload, arrays)


def per_sample(label: str, name: str, values: list[float], index: list[int]) -> dict[str, np.ndarray]:
    return {f"{label}/{name}": np.asarray(values, dtype=np.float64), f"{label}/index": np.asarray(index)}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Two metrics (higher is better) on one dataset and model. relevance_mass: t.a 0.6 > t.b 0.4 = ODD 0.4
    and a reference row; relevance_rank: ODD 0.9 > t.a 0.5, t.b failed. Per-sample values on relevance_mass:
    t.b = t.a − 0.2 on the same 4 images; ODD's (3 images) do not average to its value."""
    a = [0.9, 0.7, 0.5, 0.3]
    b = [v - 0.2 for v in a]
    mass = record(
        "core.relevance_mass",
        "20260101T000000000000Z",
        [
            result("t.a", 0.6, 0.4, 0.8),
            result("t.b", 0.4, 0.2, 0.6),
            result(ODD, 0.4),
            result("linear:gt", 1.0),
        ],
        {
            **per_sample("t.a", "relevance_mass", a, [0, 1, 2, 3]),
            **per_sample("t.b", "relevance_mass", b, [0, 1, 2, 3]),
            **per_sample(ODD, "relevance_mass", [0.5, 0.3, 0.1], [1, 2, 3]),  # mean 0.3: not its headline
        },
    )
    rank = record(
        "core.relevance_rank",
        "20260101T000001000000Z",
        [result("t.a", 0.5, 0.3, 0.7), result("t.b", None), result(ODD, 0.9, 0.8, 1.0)],
        {},
    )
    path = tmp_path / "tiny.h5"
    AttributionStore(path).merge([mass, rank])
    return path


def tiny_input(path: Path):
    return read_input(AttributionStore(path), plugin_registry())


# -- the matrix, by hand -----------------------------------------------------------------------------


def test_the_matrix_holds_every_method_on_every_board_with_its_interval_and_rank(tiny):
    built = matrix.build(leaderboard.boards(tiny_input(tiny)))
    assert [b.name for b in built.columns] == ["core.relevance_mass", "core.relevance_rank"]
    # mean ranks: t.a (1 + 2) / 2 = 1.5, ODD (2 + 1) / 2 = 1.5, t.b 2 (ranked on one board only)
    assert built.methods == ["t.a", ODD, "t.b"]  # ties by name; the reference row is not a method
    assert [built.mean_rank(m) for m in built.methods] == [1.5, 1.5, 2.0]
    cell = built.cells["t.a"]["core.relevance_mass"]
    assert (cell.value, cell.low, cell.high, cell.interval, cell.rank) == (0.6, 0.4, 0.8, "bootstrap_ci95", 1)
    assert built.cells[ODD]["core.relevance_mass"].rank == 2 == built.cells["t.b"]["core.relevance_mass"].rank
    assert built.cells["t.b"]["core.relevance_rank"].value is None
    table = matrix.table(built)
    assert table.columns == ["method", "mean rank", "core.relevance_mass ↑", "core.relevance_rank ↑"]
    assert table.rows[0] == ["t.a", 1.5, "0.600 [0.400, 0.800] #1", "0.500 [0.300, 0.700] #2"]
    assert table.rows[2][3] == "failed" and table.rows[1][2] == "0.400 #2"


def test_the_matrix_comes_first_in_the_report(tiny):
    sections, notes = build_sections(tiny_input(tiny))
    assert not notes
    assert [s.title for s in sections][:4] == [
        "Method × metric matrix",
        "Leaderboard: core.relevance_mass",
        "Leaderboard: core.relevance_rank",
        "Paired comparisons",
    ]


# -- paired comparisons, by hand ---------------------------------------------------------------------


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_and_keeps_the_order():
    # sorted: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (step-down monotone)
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert paired.holm([]) == []


def test_the_paired_bootstrap_p_value_by_hand():
    rng = np.random.default_rng(0)
    # constant differences: every centred resample mean is 0 < 0.2, so p = 1 / (resamples + 1);
    # no difference at all: every resample is as extreme, p = 1
    columns = np.stack([np.full(6, 0.2), np.zeros(6)], axis=1)
    assert paired.paired_bootstrap_p_values(columns, rng, resamples=2_500).tolist() == [1 / 2_501, 1.0]
    # d = (2, 0): centred (1, -1); a resample mean is +-1 with probability 1/2, 0 otherwise -> p = 1/2
    (p,) = paired.paired_bootstrap_p_values(np.array([[2.0], [0.0]]), rng, resamples=20_000)
    assert p == pytest.approx(0.5, abs=0.02)


def test_resample_counts_draw_each_resample_with_replacement():
    counts = paired.resample_counts(5, np.random.default_rng(1), 3000)
    assert counts.shape == (3000, 5) and (counts.sum(axis=1) == 5).all()
    assert counts.mean(axis=0).min() > 0.9 and counts.mean(axis=0).max() < 1.1  # 1 per sample on average


def test_paired_comparisons_pair_images_by_index_and_correct_for_the_pairs(tiny):
    report = tiny_input(tiny)
    (mass, _) = leaderboard.boards(report)
    samples = paired.samples(report, mass)
    assert sorted(samples) == ["t.a", "t.b"]  # ODD's per-sample mean is not its headline value: left out
    shared, ab = paired.shared_differences(samples["t.a"], samples["t.b"])
    assert shared.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(ab, [0.2] * 4)
    (found,) = paired.comparisons(report)
    assert (found.a, found.b, found.n) == ("t.a", "t.b", 4)
    assert found.mean_diff == pytest.approx(0.2)
    assert found.p == pytest.approx(1 / (paired.RESAMPLES + 1)) and found.p_holm == found.p  # one pair
    assert found.verdict == "t.a beats t.b"
    (section,) = paired.sections(report)
    assert section.blocks[0].columns == paired.COLUMNS


def test_a_beats_b_only_below_alpha_after_correction_and_in_the_metrics_direction():
    assert paired.verdict("A", "B", 0.2, 0.01, higher_is_better=True) == "A beats B"
    assert paired.verdict("A", "B", 0.2, 0.01, higher_is_better=False) == "B beats A"
    assert paired.verdict("A", "B", 0.2, 0.06, higher_is_better=True) == "no evidence of a difference"
    assert paired.verdict("A", "B", -0.1, 0.01, higher_is_better=None) == "differ (direction unknown)"


def test_rank_agreement_warns_when_it_rests_on_fewer_than_five_methods():
    assert agreement.caveat([["a", "b", 5, 1.0, 1.0]]) == ""
    text = agreement.caveat([["a", "b", 3, 1.0, 1.0], ["a", "c", 6, 0.5, 0.4]])
    assert "1 of 2 pair(s) rest on fewer than 5 methods" in text


# -- exports -----------------------------------------------------------------------------------------


def export_of(path: Path, fmt: str) -> str:
    return export.WRITERS[fmt](export.Tables.of(tiny_input(path)))


def test_the_csv_reads_back_one_row_per_leaderboard_row(tiny):
    rows = list(csv.DictReader(io.StringIO(export_of(tiny, "csv"))))
    assert list(rows[0]) == export.CSV_COLUMNS
    assert len(rows) == 7  # 4 rows on relevance_mass (one a reference), 3 on relevance_rank
    by_key = {(r["metric"], r["method"]): r for r in rows}
    a = by_key["core.relevance_mass", "t.a"]
    assert (float(a["value"]), float(a["low"]), float(a["high"]), int(a["rank"])) == (0.6, 0.4, 0.8, 1)
    assert (a["interval"], a["n"], a["direction"], a["dataset"], a["model"]) == (
        "bootstrap_ci95", "4", "higher", "core.toy", "core.toy_cnn"
    )  # fmt: skip
    reference = by_key["core.relevance_mass", "linear:gt"]
    assert (reference["row"], reference["rank"]) == ("reference", "")
    failed = by_key["core.relevance_rank", "t.b"]
    assert (failed["value"], failed["rank"]) == ("", "")
    assert by_key["core.relevance_rank", ODD]["method"] == ODD  # commas, % and & survive quoting


def test_pandas_reads_the_csv_and_pivots_it_into_the_matrix(tiny):
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(io.StringIO(export_of(tiny, "csv")))
    pivot = table.query("row == 'explainer'").pivot(index="method", columns="metric", values="value")
    assert pivot.loc["t.a", "core.relevance_mass"] == 0.6 and pivot.loc[ODD, "core.relevance_rank"] == 0.9
    assert pandas.isna(pivot.loc["t.b", "core.relevance_rank"])


def test_the_json_has_no_nan_and_holds_the_matrix_and_the_comparisons(tiny):
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    document = json.loads(export_of(tiny, "json"), parse_constant=refuse)
    assert len(document["leaderboards"]) == 7
    assert [r["method"] for r in document["matrix"]["rows"]] == ["t.a", ODD, "t.b"]
    t_b = document["matrix"]["rows"][2]
    assert t_b["cells"][1] == {
        "value": None,
        "low": None,
        "high": None,
        "interval": None,
        "n": 4,
        "rank": None,
    }
    assert document["comparisons"][0]["verdict"] == "t.a beats t.b"
    assert json_safe({"x": [float("nan"), float("inf"), 1.5]}) == {"x": [None, None, 1.5]}


def tabulars(latex: str) -> list[tuple[str, list[str]]]:
    """Each tabular's column spec and its rows (between the \\hline rules)."""
    found = re.findall(r"\\begin\{tabular\}\{(\w+)\}\n(.*?)\\end\{tabular\}", latex, re.DOTALL)
    return [(spec, [r for r in body.splitlines() if r != r"\hline"]) for spec, body in found]


def test_the_latex_escapes_specials_and_every_row_fills_its_columns(tiny):
    latex = export_of(tiny, "latex")
    assert latex.count("{") == latex.count("}")
    assert r"t.odd\_one:note=50\%\&up" in latex
    body = latex.split("\n", 1)[1].replace(" & ", " ")  # past the leading comment, without separators
    assert not re.search(r"[_%&#$]", re.sub(r"\\[_%&#$]", "", body))  # every special escaped
    tables = tabulars(latex)
    assert len(tables) == 4  # the matrix, two leaderboards, one board's paired comparisons
    for spec, rows in tables:
        assert all(row.endswith(r" \\") and row.count(" & ") == len(spec) - 1 for row in rows), spec
    assert r"\textbf{0.600} {\footnotesize[0.400, 0.800]} (1)" in latex
    assert latex.isascii()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installed (pdflatex)")
def test_the_latex_compiles(tiny, tmp_path):
    (tmp_path / "tables.tex").write_text(export_of(tiny, "latex"))
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\begin{document}\n\\input{tables}\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").read_bytes().startswith(b"%PDF")


def test_the_report_command_exports_to_stdout_or_a_file_it_keeps_unless_forced(tiny, tmp_path):
    runner = CliRunner()
    printed = runner.invoke(cli, ["report", "--store", str(tiny), "--format", "csv"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == export_of(tiny, "csv")
    target = tmp_path / "tables.json"
    target.write_text("mine")
    kept = runner.invoke(cli, ["report", "--store", str(tiny), "--format", "json", "--output", str(target)])
    assert kept.exit_code == 2 and "exists; pass --force" in kept.output
    assert target.read_text() == "mine"
    forced = runner.invoke(
        cli, ["report", "--store", str(tiny), "--format", "json", "--output", str(target), "--force"]
    )
    assert forced.exit_code == 0 and forced.stdout.strip() == str(target)
    assert json.loads(target.read_text())["leaderboards"]
    misplaced = runner.invoke(cli, ["report", "--store", str(tiny), "--output", "x.csv"])
    assert misplaced.exit_code == 2 and "--output is for --format csv|latex|json" in misplaced.output
    assert not Path("attribench-report").exists()


# -- drill-down on real runs -------------------------------------------------------------------------


def test_extremes_pick_the_best_and_worst_scores_in_the_metrics_direction():
    scores = paired.Samples(np.array([10, 11, 12, 13, 14]), np.array([0.5, 0.9, 0.1, 0.9, 0.3]))
    best, worst = drilldown.extremes(scores, higher_is_better=True, k=2)
    assert best.tolist() == [11, 13] and worst.tolist() == [12, 14]  # the tie of 0.9 goes to the lower index
    best, worst = drilldown.extremes(scores, higher_is_better=False, k=2)
    assert best.tolist() == [12, 14] and worst.tolist() == [11, 13]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Path:
    """relevance mass of t.grad (twice: default and delay=0.001, two groups) and t.noise on 12 toy images."""
    path = tmp_path_factory.mktemp("paper") / "runs.h5"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTRIBENCH_HOME", str(cache_home))
        request = RunRequest(
            "core.relevance_mass", ["t.grad", "t.grad:delay=0.001", "t.noise"], num_imgs=12, store=path
        )
        run(plugin_registry({"t": abfixture.plugin}), request)
    return path


def real_input(path: Path):
    return read_input(AttributionStore(path), plugin_registry({"t": abfixture.plugin}))


def test_the_drill_down_shows_the_best_and_worst_images_of_the_top_method_with_its_maps(real):
    report = real_input(real)
    (board,) = leaderboard.boards(report)
    (drill,) = drilldown.top_methods([board])
    assert board.ranks()[drill.label] == 1
    run_arrays = report.runs[0].arrays
    values, index = run_arrays[f"{drill.label}/relevance_mass"], run_arrays[f"{drill.label}/index"]
    best, worst = drilldown.extremes(paired.samples(report, board)[drill.label], True)
    score = dict(zip(index.tolist(), values.tolist(), strict=True))
    assert [score[i] for i in best] == sorted(values, reverse=True)[:3]
    assert [score[i] for i in worst] == sorted(values)[:3]
    path = drilldown.group_path(report, drill)
    attrs = next(g["attrs"] for g in report.attribution_groups if g["path"] == path)
    assert attrs["explainer"] == drill.label.partition(":")[0]
    made = drilldown.figure(report, drill)
    assert isinstance(made, Figure) and made.png.startswith(b"\x89PNG") and drill.label in made.title


def test_the_drill_down_finds_the_group_of_the_labels_own_parameters(real):
    report = real_input(real)
    (board,) = leaderboard.boards(report)
    groups = {g["path"]: g["attrs"]["params"] for g in report.attribution_groups}
    default = drilldown.group_path(report, drilldown.Drill(board, "t.grad"))
    slow = drilldown.group_path(report, drilldown.Drill(board, "t.grad:delay=0.001"))
    assert groups[default] == {"delay": 0.0} and groups[slow] == {"delay": 0.001}
    key = GroupKey(*default.split("/")[1:])
    assert len(AttributionStore(real).completed(key)) == 12


def test_drill_asks_for_one_method_and_an_unknown_one_is_a_usage_error(real, tmp_path):
    with using_plugins({"t": abfixture.plugin}):
        asked = CliRunner().invoke(
            cli, ["report", "--store", str(real), "--format", "md", "--drill", "core.relevance_mass:t.noise"]
        )
        unknown = CliRunner().invoke(
            cli, ["report", "--store", str(real), "--drill", "core.relevance_mass:t.nope"]
        )
    assert asked.exit_code == 0, asked.output
    markdown = (tmp_path / "attribench-report" / "report.md").read_text()
    drill_part = markdown[markdown.index("## Per-image drill-down") :]
    assert "![t.noise on core.relevance_mass]" in drill_part and "t.grad on" not in drill_part
    assert unknown.exit_code == 2
    assert (
        "--drill core.relevance_mass:t.nope: no leaderboard of core.relevance_mass has a row 't.nope'"
        in unknown.output
    )


def test_a_drill_without_maps_in_the_store_says_so(tiny):
    report = tiny_input(tiny)
    (section,) = drilldown.sections(report, ["core.relevance_mass:t.a"])
    assert (
        not section.blocks
        and "t.a on core.relevance_mass: its attribution maps are not in the store." in section.text
    )


# -- the page ----------------------------------------------------------------------------------------


def test_dataset_options_read_as_words():
    assert provenance.dataset_options_text({"size": None}) == "default"
    assert (
        provenance.dataset_options_text({"size": 64, "split_seed": None, "alpha": 0.5})
        == "alpha = 0.5, size = 64"
    )
    assert provenance.dataset_options_text(None) == "default"


def test_every_html_table_scrolls_in_its_own_box(real, tmp_path):
    with using_plugins({"t": abfixture.plugin}):
        made = CliRunner().invoke(cli, ["report", "--store", str(real), "--format", "html"])
    assert made.exit_code == 0, made.output
    page = (tmp_path / "attribench-report" / "index.html").read_text()
    assert page.count("<table>") == page.count('<div class="scroll"><table>') > 0
    assert "{&quot;size&quot;: null}" not in page and '{"size": null}' not in page


CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None
)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_the_page_passes_the_headless_chromium_check(real, tmp_path):
    with using_plugins({"t": abfixture.plugin}):
        made = CliRunner().invoke(cli, ["report", "--store", str(real), "--format", "html"])
    assert made.exit_code == 0, made.output
    check = [sys.executable, str(ROOT / "scripts" / "check_report.py"), "attribench-report"]
    done = subprocess.run([*check, "--screenshot", "shot.png"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fits 1280 px" in done.stdout
    page = tmp_path / "attribench-report" / "index.html"
    wide = (
        page.read_text()
        .replace('<div class="scroll">', "<div>", 1)
        .replace("<table>", '<table style="width: 3000px">', 1)
    )
    page.write_text(wide)
    failed = subprocess.run([*check, "--screenshot", "shot.png"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "scrolls sideways at 1280 px" in failed.stderr
