"""The report by metric category, on a store written by hand: the matrix groups its columns by the category
each run saved and marks their directions (a lower-is-better robustness metric ranks its smallest value
first), the exports carry the category, runs of a randomisation metric get their curves drawn, and runs
saved before categories were still report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from attribench_core.report import export, figures, leaderboard, matrix, randomisation
from attribench_core.report.assemble import build_sections
from attribench_core.report.content import Figure, Table
from attribench_core.report.reading import read_input
from attribench_core.result import Curve, Result, ResultTable, StoredRun, run_arrays
from attribench_core.store import AttributionStore
from attribench_core.testing import plugin_registry

PLACE = {"dataset": "core.toy", "model": "core.toy_cnn", "seed": 0}
LAYERS = ["fc", "conv2", "conv1"]  # randomised top down: step 1 randomises fc
SIMILARITIES = ("spearman_abs", "spearman", "ssim")


def layer_curves(falls: float) -> dict[str, Curve]:
    """Similarities over the layers randomised, falling by `falls` per step (0: a map the model does not
    shape)."""
    steps = [1.0, 2.0, 3.0]
    return {
        name: Curve("layers randomised", steps, [1.0 - falls * k for k in steps]) for name in SIMILARITIES
    }


def stored(
    metric: str,
    run_id: str,
    results: dict[str, Result],
    higher_is_better: bool | None,
    category: str | None,
) -> StoredRun:
    """A run as `attribench run` saves it; a None direction or category is left out, as older runs did."""
    payload = {
        "metric": metric,
        "options": {},
        "results": [r.to_json(label) for label, r in results.items()],
        "provenance": PLACE,
        "models": [],
        **({} if higher_is_better is None else {"higher_is_better": higher_is_better}),
        **({} if category is None else {"category": category}),
    }
    return StoredRun(metric, run_id, payload, run_arrays(results))


def values(**by_label: float) -> dict[str, Result]:
    return {f"m.{label}": Result(value, n=4) for label, value in by_label.items()}


def mprt_like(layers: list[str]) -> dict[str, Result]:
    """Gradient's similarity falls with randomisation, edge detection's stays at 1."""
    table = ResultTable(["step", "layer"], [[k + 1.0, name] for k, name in enumerate(layers)])
    return {
        label: Result(1.0 - 2 * falls, curves=layer_curves(falls), tables={"layers": table}, n=4)
        for label, falls in {"m.gradient": 0.3, "m.edge": 0.0}.items()
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """x.gini (complexity, higher is better), x.sensitivity (robustness, lower is better), x.mprt
    (randomisation, lower is better, with layer curves) and x.old, saved without direction or category."""
    path = tmp_path / "categories.h5"
    AttributionStore(path).merge(
        [
            stored("x.sensitivity", "1", values(gradient=0.4, edge=0.1), False, "robustness"),
            stored("x.gini", "2", values(gradient=0.9, edge=0.7), True, "complexity"),
            stored("x.mprt", "3", mprt_like(LAYERS), False, "randomisation"),
            stored("x.old", "4", values(gradient=0.5, edge=0.6), None, None),
        ]
    )
    return path


def report_of(path: Path):
    return read_input(AttributionStore(path), plugin_registry())


def test_the_matrix_groups_columns_by_category_and_ranks_each_in_its_direction(store):
    built = matrix.build(leaderboard.boards(report_of(store)))
    assert [(b.name, b.category) for b in built.columns] == [
        ("x.gini", "complexity"),
        ("x.mprt", "randomisation"),
        ("x.sensitivity", "robustness"),
        ("x.old", None),  # unknown last
    ]
    ranks = {(m, b): e.rank for m, row in built.cells.items() for b, e in row.items()}
    assert ranks["m.gradient", "x.gini"] == 1  # higher is better: 0.9 > 0.7
    assert ranks["m.edge", "x.sensitivity"] == 1  # lower is better: 0.1 < 0.4
    assert ranks["m.edge", "x.mprt"] == 2  # similarity 1: fails the randomisation check
    assert ranks["m.gradient", "x.old"] is None  # direction unknown: not ranked
    assert matrix.table(built).columns[2:] == ["x.gini ↑", "x.mprt ↓", "x.sensitivity ↓", "x.old"]
    text = matrix.sections(report_of(store))[0].text
    assert (
        "Columns by category: complexity: x.gini; randomisation: x.mprt; robustness: x.sensitivity; "
        "category unknown: x.old." in text
    )


def test_the_exports_carry_each_metrics_category_and_direction(store):
    tables = export.Tables.of(report_of(store))
    rows = list(csv.DictReader(io.StringIO(export.to_csv(tables))))
    found = {(r["metric"], r["category"], r["direction"]) for r in rows}
    assert found == {
        ("x.gini", "complexity", "higher"),
        ("x.mprt", "randomisation", "lower"),
        ("x.sensitivity", "robustness", "lower"),
        ("x.old", "", "unknown"),
    }
    columns = json.loads(export.to_json(tables))["matrix"]["columns"]
    assert [(c["name"], c["category"]) for c in columns][:1] == [("x.gini", "complexity")]
    latex = export.to_latex(tables)
    assert r"x.sensitivity \ensuremath{\downarrow}" in latex and r"x.gini \ensuremath{\uparrow}" in latex


def test_a_randomisation_run_with_curves_gets_a_figure_per_similarity_and_its_layers(store):
    sections, notes = build_sections(report_of(store))
    assert not notes
    titles = [s.title for s in sections]
    assert titles.index("Randomisation curves: x.mprt") == titles.index("Rank agreement") + 1
    assert sum(t.startswith("Randomisation curves") for t in titles) == 1  # only the randomisation metric
    section = sections[titles.index("Randomisation curves: x.mprt")]
    found = [b for b in section.blocks if isinstance(b, Figure)]
    assert [f.title for f in found] == [f"x.mprt: {name}" for name in SIMILARITIES]
    assert all(f.png.startswith(b"\x89PNG") for f in found)
    assert "the x-axis names the layer randomised at each step" in found[0].caption
    (layers,) = [b for b in section.blocks if isinstance(b, Table)]
    assert layers.rows == [[1, "fc"], [2, "conv2"], [3, "conv1"]]
    assert "better: lower" in section.text


def test_each_figure_has_one_line_per_method(store):
    (board,) = [b for b in leaderboard.boards(report_of(store)) if b.metric == "x.mprt"]
    curves = randomisation.curves_of(board, "ssim")
    assert list(curves) == ["m.edge", "m.gradient"]
    assert curves["m.edge"].y == [1.0, 1.0, 1.0] and curves["m.gradient"].y == pytest.approx([0.7, 0.4, 0.1])


def test_layer_names_label_the_axis_only_when_there_are_few_and_each_step_has_one():
    layers = {1.0: "fc", 2.0: "conv2"}
    assert randomisation.axis_names([1.0, 2.0], layers) == ["fc", "conv2"]
    assert randomisation.axis_names([1.0, 2.0, 3.0], layers) is None
    many = {float(k): f"layer{k}" for k in range(1, randomisation.NAMED_TICKS + 2)}
    assert randomisation.axis_names(sorted(many), many) is None


def test_many_layers_are_named_in_the_table_instead(tmp_path):
    names = [f"block{k}" for k in range(randomisation.NAMED_TICKS + 1)]
    results = mprt_like(names)
    for result in results.values():
        result.curves = {
            "ssim": Curve("layers randomised", [float(k + 1) for k in range(len(names))], [1.0] * len(names))
        }
    path = tmp_path / "deep.h5"
    AttributionStore(path).merge([stored("x.mprt", "1", results, False, "randomisation")])
    (section,) = randomisation.sections(report_of(path))
    figure, table = section.blocks
    assert "the table below names the layer of each step" in figure.caption
    assert len(table.rows) == len(names)


def test_no_section_for_curves_of_another_category_or_a_randomisation_run_without_curves(tmp_path):
    path = tmp_path / "other.h5"
    curved = {"m.gradient": Result(0.5, curves=layer_curves(0.1), n=4)}
    AttributionStore(path).merge(
        [
            stored("x.curved", "1", curved, True, "faithfulness"),
            stored("x.flat", "2", values(gradient=0.2), False, "randomisation"),
        ]
    )
    assert randomisation.sections(report_of(path)) == []


def test_runs_saved_before_categories_take_the_installed_metrics_or_none(tmp_path):
    path = tmp_path / "old.h5"
    AttributionStore(path).merge(
        [
            stored("core.relevance_mass", "1", values(gradient=0.5), None, None),
            stored("x.gone", "2", values(gradient=0.5), None, None),
        ]
    )
    report = report_of(path)
    assert [r.category for r in report.runs] == [None, None]
    assert report.category("core.relevance_mass") == "ground_truth"  # the installed metric declares it
    assert report.category("x.gone") is None and report.higher_is_better("x.gone") is None
    sections, notes = build_sections(report)
    assert not notes and sections[0].title == "Method × metric matrix"


def test_the_newest_saved_category_wins_over_the_installed_one(tmp_path):
    path = tmp_path / "renamed.h5"
    AttributionStore(path).merge(
        [
            stored("core.relevance_mass", "1", values(gradient=0.5), True, "old"),
            stored("core.relevance_mass", "2", values(gradient=0.5), True, None),
        ]
    )
    assert report_of(path).category("core.relevance_mass") == "old"


def test_lines_that_coincide_are_told_apart_by_hollow_markers_of_shrinking_size():
    _, ax = figures.new_figure()
    figures.curves(ax, {"m.edge": ([1.0, 2.0], [1.0, 1.0]), "m.random": ([1.0, 2.0], [1.0, 1.0])})
    randomisation.mark_apart(ax.lines)
    assert [line.get_marker() for line in ax.lines] == ["o", "s"]
    assert ax.lines[0].get_markersize() > ax.lines[1].get_markersize()
    assert {line.get_markerfacecolor() for line in ax.lines} == {"none"}
