"""Leaderboards: one per distinct (metric, options, dataset, model), newest result per label, ranked in
the metric's direction.

Rows whose label is not an explainer's (explainer labels are qualified, `methods.ig[:params]`; an extra row
such as `linear:gt` is not) are listed after the explainers as references, unranked; so are results
without a value (an explainer that failed). The direction is the one the runs saved; for runs saved
before runs carried it, the installed metric's; when neither is known nothing is ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attribench_core.report import figures
from attribench_core.report.content import (
    Block,
    ReportInput,
    Section,
    Table,
    diagnostics_text,
    finite,
    options_text,
    uncertainty_bounds,
)
from attribench_core.report.grouping import group_runs
from attribench_core.report.ranking import competition_ranks
from attribench_core.result import Result

COLUMNS = ["rank", "method", "value", "uncertainty", "kind", "n", "skipped"]


def is_explainer(label: str) -> bool:
    """Explainer labels are qualified names (`methods.ig`, `methods.ig:steps=32`); extra rows are not."""
    return "." in label.partition(":")[0]


@dataclass
class Board:
    """The newest result per label of one metric with one set of options on one dataset and model."""

    metric: str
    options: dict[str, Any]
    dataset: str | None
    model: str | None
    higher_is_better: bool | None
    results: dict[str, Result] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    source: str = ""  # the dataset's account of what the data is (provenance `dataset_source`)
    name: str = ""  # the metric, plus what tells it apart from the metric's other boards (`RunGroup.name`)
    category: str | None = None  # the metric's category (`ReportInput.category`), None when unknown

    def explainer_values(self) -> dict[str, float]:
        """Finite headline values of the explainer rows (what ranks and rank agreement use)."""
        return {
            label: r.value
            for label, r in self.results.items()
            if is_explainer(label) and finite(r.value) is not None
        }

    def ranks(self) -> dict[str, int]:
        """Rank per ranked explainer label; empty when the direction is unknown."""
        if self.higher_is_better is None:
            return {}
        values = self.explainer_values()
        return dict(zip(values, competition_ranks(list(values.values()), self.higher_is_better), strict=True))


def boards(report: ReportInput) -> list[Board]:
    """The report's leaderboards (`grouping.group_runs`), sorted by metric, each with a `name` unique in the
    report."""
    return [
        Board(
            g.metric,
            g.options,
            g.dataset,
            g.model,
            report.higher_is_better(g.metric),
            g.results,
            g.run_ids,
            g.source,
            g.name,
            report.category(g.metric),
        )
        for g in group_runs(report.runs)
    ]


def rows(board: Board) -> list[list[Any]]:
    """Table rows (`COLUMNS`): ranked explainers best first, then unranked explainers, then reference rows."""
    ranks = board.ranks()

    def order(label: str) -> tuple[int, float, str]:
        if label in ranks:
            return (0, ranks[label], label)
        return (1 if is_explainer(label) else 2, 0, label)

    out = []
    for label in sorted(board.results, key=order):
        result = board.results[label]
        low, high = uncertainty_bounds(result)
        span = f"{low:.3f} – {high:.3f}" if low is not None and high is not None else None
        out.append(
            [
                ranks.get(label),
                label,
                finite(result.value),
                span,
                None if result.uncertainty is None else result.uncertainty.kind,
                f"{result.n}*" if result.small_n else result.n,
                result.n_skipped,
            ]
        )
    return out


def _direction(board: Board) -> str:
    if board.higher_is_better is None:
        return (
            f"The runs of {board.metric} predate saved directions and its plugin is not installed, so its "
            "direction is unknown and the rows are not ranked."
        )
    better = "higher" if board.higher_is_better else "lower"
    return f"{better.capitalize()} is better; equal values share a rank."


def diagnostics_notes(board: Board, groups: Sequence[dict[str, Any]]) -> list[str]:
    """One line per explainer row whose maps on the board's dataset and model carry per-map diagnostics
    (e.g. DeepLIFT's summation gap), so that the reader sees them beside the values."""
    notes = []
    for label in sorted(filter(is_explainer, board.results)):
        name, _, given = label.partition(":")
        wanted = dict(part.split("=", 1) for part in given.split(",") if "=" in part)
        for group in groups:
            a, summary = group["attrs"], group.get("diagnostics")
            params = a.get("params") if isinstance(a.get("params"), dict) else {}
            key = (a.get("explainer"), a.get("dataset"), a.get("model"))
            if (
                summary
                and key == (name, board.dataset, board.model)
                and all(str(params.get(k)) == v for k, v in wanted.items())
            ):
                notes.append(f"{label}: {diagnostics_text(summary)}.")
    return notes


def section(board: Board, groups: Sequence[dict[str, Any]] = ()) -> Section:
    """A board's section: what it is (with the diagnostics of its explainers' maps, see
    `diagnostics_notes`), its table and a bar chart of the values with their uncertainty."""
    table_rows = rows(board)
    where = f" on {board.dataset} / {board.model}" if board.dataset else ""
    options = options_text(board.options) or "none"
    text = (
        f"{board.metric}{where} (options: {options}); newest result per method over "
        f"{len(board.run_ids)} run(s). {_direction(board)}"
    )
    if board.source:
        text += f" Data: {board.source}."
    caption = (
        "Rows without a rank: a method without a value (its run failed), a metric whose direction is "
        "unknown, or a reference row that is not an explainer. n*: fewer than 30 images, too few for the "
        "interval to be reliable."
    )
    blocks: list[Block] = [Table(board.name, COLUMNS, table_rows, caption)]
    plotted = [r for r in table_rows if finite(r[2]) is not None]
    if plotted:
        low, high = zip(*(uncertainty_bounds(board.results[r[1]]) for r in plotted), strict=True)
        fig, ax = figures.new_figure(max(4.0, 0.5 * len(plotted) + 2), 3.2)
        figures.bars(ax, [r[1] for r in plotted], [r[2] for r in plotted], low, high, ylabel=board.metric)
        blocks.append(figures.render(fig, f"{board.name}: values", "Error bars: the uncertainty column."))
    notes = diagnostics_notes(board, groups)
    if notes:
        text += "\n\nDiagnostics of the maps: " + " ".join(notes)
    return Section(f"Leaderboard: {board.name}", text, blocks)


def sections(report: ReportInput) -> list[Section]:
    """One section per leaderboard."""
    return [section(board, report.attribution_groups) for board in boards(report)]
