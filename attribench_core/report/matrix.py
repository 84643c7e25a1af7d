"""The method × metric matrix: every explainer against every leaderboard in the store, the view to read first.

Rows are methods (explainer labels), columns are leaderboards (metric with its options, on a dataset and a
model), grouped by the metric's category (robustness, complexity, ...) and marked with its direction; a cell
holds the method's value on that board, its interval and its rank within the column. Methods are ordered
by their mean rank over the columns that rank them (a summary across metrics, not a test: see the paired
comparisons for evidence that one method beats another on one metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attribench_core.report.content import (
    ReportInput,
    Section,
    Table,
    finite,
    options_text,
    uncertainty_bounds,
)
from attribench_core.report.leaderboard import Board, boards, is_explainer


@dataclass(frozen=True)
class Entry:
    """One leaderboard row in a flat form (a CSV row): where it was measured, the value and its rank."""

    metric: str
    options: str
    dataset: str | None
    model: str | None
    method: str
    row: str  # "explainer", or "reference" for an extra row such as SoCo's `linear:gt`
    value: float | None
    low: float | None
    high: float | None
    interval: str | None
    n: int | None
    n_skipped: int | None
    rank: int | None
    direction: str  # "higher", "lower", or "unknown" (the metric's plugin is not installed)
    category: str | None  # the metric's category, None when unknown (an old run, its plugin missing)


def direction(board: Board) -> str:
    """Which way is better on the board, in one word."""
    return {True: "higher", False: "lower", None: "unknown"}[board.higher_is_better]


def entries(board: Board) -> list[Entry]:
    """The board's rows in label order (explainers and reference rows, with or without a value)."""
    ranks = board.ranks()
    out = []
    for label in sorted(board.results):
        result = board.results[label]
        low, high = uncertainty_bounds(result)
        out.append(
            Entry(
                board.metric,
                options_text(board.options),
                board.dataset,
                board.model,
                label,
                "explainer" if is_explainer(label) else "reference",
                finite(result.value),
                low,
                high,
                None if result.uncertainty is None else result.uncertainty.kind,
                result.n,
                result.n_skipped,
                ranks.get(label),
                direction(board),
                board.category,
            )
        )
    return out


@dataclass
class Matrix:
    """Methods × boards: `cells[method][board.name]` is the method's `Entry` on a board (absent: not run)."""

    columns: list[Board]
    methods: list[str]
    cells: dict[str, dict[str, Entry]]

    def mean_rank(self, method: str) -> float | None:
        """The method's mean rank over the columns that rank it; None when none does."""
        ranks = [e.rank for e in self.cells[method].values() if e.rank is not None]
        return float(np.mean(ranks)) if ranks else None


def by_category(all_boards: list[Board]) -> list[Board]:
    """The boards grouped by category (sorted by name, unknown last), in their order within a category."""
    return sorted(all_boards, key=lambda b: (b.category is None, b.category or ""))


def build(all_boards: list[Board]) -> Matrix:
    """The matrix of every explainer row on every board, columns `by_category`; methods by mean rank
    (unranked last), then name."""
    cells: dict[str, dict[str, Entry]] = {}
    for board in all_boards:
        for entry in entries(board):
            if entry.row == "explainer":
                cells.setdefault(entry.method, {})[board.name] = entry
    matrix = Matrix(by_category(all_boards), [], cells)
    unranked = float("inf")
    matrix.methods = sorted(cells, key=lambda m: (matrix.mean_rank(m) or unranked, m))
    return matrix


ARROWS = {"higher": " ↑", "lower": " ↓", "unknown": ""}


def column_title(board: Board, same_place: bool) -> str:
    """The board's name, with its dataset and model unless every column shares them (or the name has them),
    and an arrow for its direction (↑ higher is better, ↓ lower is better, none when unknown)."""
    place = f"on {board.dataset} / {board.model}"
    name = board.name if same_place or place in board.name else f"{board.name} {place}"
    return name + ARROWS[direction(board)]


def categories_text(columns: list[Board]) -> str:
    """The columns' names per category, e.g. "complexity: checks.complexity, checks.sparseness"."""
    named: dict[str, list[str]] = {}
    for board in columns:
        named.setdefault(board.category or "category unknown", []).append(board.name)
    return "; ".join(f"{category}: {', '.join(names)}" for category, names in named.items())


def cell_text(entry: Entry | None) -> str | None:
    """A cell as `value [low, high] #rank` (parts left out when missing); None when the method was not run."""
    if entry is None:
        return None
    if entry.value is None:
        return "failed"
    text = f"{entry.value:.3f}"
    if entry.low is not None and entry.high is not None:
        text += f" [{entry.low:.3f}, {entry.high:.3f}]"
    return text + (f" #{entry.rank}" if entry.rank is not None else "")


def table(matrix: Matrix) -> Table:
    """The matrix as a report table: method, mean rank, then one column per board."""
    same_place = len({(b.dataset, b.model) for b in matrix.columns}) == 1
    columns = ["method", "mean rank", *(column_title(b, same_place) for b in matrix.columns)]
    rows = [
        [
            method,
            matrix.mean_rank(method),
            *(cell_text(matrix.cells[method].get(b.name)) for b in matrix.columns),
        ]
        for method in matrix.methods
    ]
    caption = (
        "Cell: value [interval] #rank within its column (the leaderboard's rank, in its metric's direction: "
        "↑ higher is better, ↓ lower is better); "
        "–: not run on that board; failed: run without a value. Mean rank: over the columns that rank the "
        "method."
    )
    return Table("Method × metric", columns, rows, caption)


def sections(report: ReportInput) -> list[Section]:
    """The matrix section, first in the report; none when the store holds no explainer results."""
    matrix = build(boards(report))
    if not matrix.methods:
        return []
    places = sorted({f"{b.dataset} / {b.model}" for b in matrix.columns})
    text = (
        f"Every method against every leaderboard in the store ({len(matrix.columns)} column(s), "
        f"{len(matrix.methods)} method(s); data / model: {', '.join(places)}). Each column ranks the methods "
        "in its metric's direction; methods are ordered by their mean rank across columns, a summary rather "
        "than evidence: the paired comparisons below say which differences on one metric are more than noise."
        f"\n\nColumns by category: {categories_text(matrix.columns)}."
    )
    return [Section("Method × metric matrix", text, [table(matrix)])]
