"""The report's numbers as tables a paper or a notebook takes: CSV, LaTeX or JSON (`attribench report
--format csv|latex|json`).

- CSV: one row per leaderboard row (metric, options, dataset, model, method) with its value, interval, n,
  rank and the metric's direction; the method × metric matrix is its pivot.
- LaTeX: the matrix, every leaderboard and the paired comparisons as `table` floats for `\\input`, using
  plain `tabular` and `\\hline` (no package needed), every special character escaped.
- JSON: the leaderboard rows, the matrix and the paired comparisons; non-finite numbers are `null`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from attribench_core.registry import Registry
from attribench_core.report import matrix as method_matrix
from attribench_core.report import paired
from attribench_core.report.content import ReportInput
from attribench_core.report.leaderboard import Board, boards, rows
from attribench_core.report.matrix import Entry, Matrix
from attribench_core.report.reading import read_input
from attribench_core.result import json_text
from attribench_core.store import AttributionStore

FORMATS = ("csv", "latex", "json")
CSV_COLUMNS = [f.name for f in dataclasses.fields(Entry)]


@dataclasses.dataclass
class Tables:
    """What an export holds: the leaderboards, their matrix and the paired comparisons."""

    boards: list[Board]
    matrix: Matrix
    comparisons: list[paired.Comparison]

    @classmethod
    def of(cls, report: ReportInput) -> Tables:
        found = boards(report)
        return cls(found, method_matrix.build(found), paired.comparisons(report))

    def entries(self) -> list[Entry]:
        return [entry for board in self.boards for entry in method_matrix.entries(board)]


# -- CSV -------------------------------------------------------------------------------------------


def to_csv(tables: Tables) -> str:
    """One row per leaderboard row; missing values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in tables.entries():
        writer.writerow("" if v is None else v for v in dataclasses.astuple(entry))
    return buffer.getvalue()


# -- JSON ------------------------------------------------------------------------------------------


def matrix_json(matrix: Matrix) -> dict[str, Any]:
    """Columns (one per leaderboard) and rows (one per method) with a cell per column (null: not run)."""
    columns = [
        {
            "name": b.name,
            "metric": b.metric,
            "options": b.options,
            "dataset": b.dataset,
            "model": b.model,
            "direction": method_matrix.direction(b),
            "category": b.category,
        }
        for b in matrix.columns
    ]
    cell_fields = ("value", "low", "high", "interval", "n", "rank")
    rows_out = [
        {
            "method": method,
            "mean_rank": matrix.mean_rank(method),
            "cells": [
                None
                if (e := matrix.cells[method].get(b.name)) is None
                else {f: getattr(e, f) for f in cell_fields}
                for b in matrix.columns
            ],
        }
        for method in matrix.methods
    ]
    return {"columns": columns, "rows": rows_out}


def to_json(tables: Tables) -> str:
    """`{"leaderboards": [...], "matrix": {...}, "comparisons": [...]}`, never NaN."""
    document = {
        "leaderboards": [dataclasses.asdict(e) for e in tables.entries()],
        "matrix": matrix_json(tables.matrix),
        "comparisons": [dataclasses.asdict(c) for c in tables.comparisons],
    }
    return json_text(document, indent=1) + "\n"  # non-finite numbers as null, as the `--json` contract


# -- LaTeX -----------------------------------------------------------------------------------------

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "×": r"$\times$",
    "−": "-",
    "–": "--",
    "↑": r"\ensuremath{\uparrow}",
    "↓": r"\ensuremath{\downarrow}",
}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped (and the few non-ASCII ones the report uses spelled
    out), so it typesets as written."""
    return "".join(LATEX_SPECIALS.get(c, c) for c in text)


def latex_number(value: Any) -> str:
    """A number with 3 decimals, '--' for none; anything else escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "--"
    if isinstance(value, float):
        return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3g}"
    return latex_escape(str(value))


def latex_table(caption: str, columns: Sequence[str], body: Iterable[Sequence[str]], align: str) -> str:
    """A `table` float holding a `tabular` with a header row; cells are already LaTeX."""
    lines = [
        r"\begin{table}[htbp]",
        r"\centering\small",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\hline",
        " & ".join(latex_escape(c) for c in columns) + r" \\",
        r"\hline",
        *(" & ".join(row) + r" \\" for row in body),
        r"\hline",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines)


def latex_cell(entry: Entry | None) -> str:
    """A matrix cell: the value (bold when ranked first), its interval and its rank."""
    if entry is None:
        return "--"
    if entry.value is None:
        return "failed"
    value = latex_number(entry.value)
    text = rf"\textbf{{{value}}}" if entry.rank == 1 else value
    if entry.low is not None and entry.high is not None:
        text += rf" {{\footnotesize[{latex_number(entry.low)}, {latex_number(entry.high)}]}}"
    return text + (f" ({entry.rank})" if entry.rank is not None else "")


def latex_matrix(matrix: Matrix) -> str:
    same_place = len({(b.dataset, b.model) for b in matrix.columns}) == 1
    titles = [method_matrix.column_title(b, same_place) for b in matrix.columns]
    body = [
        [
            latex_escape(m),
            latex_number(matrix.mean_rank(m)),
            *(latex_cell(matrix.cells[m].get(b.name)) for b in matrix.columns),
        ]
        for m in matrix.methods
    ]
    places = ", ".join(sorted({f"{b.dataset} / {b.model}" for b in matrix.columns}))
    caption = (
        f"Method x metric on {places}: value [interval] (rank within the column); bold: ranked first; "
        "--: not run; ↑ higher is better, ↓ lower is better."
    )
    return latex_table(caption, ["method", "mean rank", *titles], body, "lr" + "l" * len(titles))


def latex_board(board: Board) -> str:
    body = [[latex_number(cell) for cell in row] for row in rows(board)]
    better = {"higher": "higher is better", "lower": "lower is better"}.get(
        method_matrix.direction(board), "direction unknown"
    )
    caption = f"{board.name} on {board.dataset} / {board.model} ({better})."
    return latex_table(
        caption, ["rank", "method", "value", "interval", "kind", "n", "skipped"], body, "rllllrr"
    )


def latex_comparisons(name: str, found: list[paired.Comparison]) -> str:
    body = [
        [
            latex_escape(c.a),
            latex_escape(c.b),
            str(c.n),
            latex_number(c.mean_diff),
            f"{c.p:.2g}",
            f"{c.p_holm:.2g}",
            latex_escape(c.verdict),
        ]
        for c in found
    ]
    caption = (
        f"Paired comparisons on {name}: mean A - B on the shared images, paired bootstrap p, "
        "Holm-corrected p."
    )
    return latex_table(caption, ["A", "B", "n", "mean A - B", "p", "p (Holm)", "verdict"], body, "llrrrrl")


def to_latex(tables: Tables) -> str:
    """The matrix, each leaderboard and each board's paired comparisons, as `table` floats."""
    parts = [
        "% attribench report --format latex: \\input{} into a document; plain tabular, no package needed.",
        latex_matrix(tables.matrix),
        *(latex_board(b) for b in tables.boards),
        *(
            latex_comparisons(name, [c for c in tables.comparisons if c.board == name])
            for name in dict.fromkeys(c.board for c in tables.comparisons)
        ),
    ]
    return "\n\n".join(parts) + "\n"


WRITERS = {"csv": to_csv, "latex": to_latex, "json": to_json}


def export(store_path: Path, registry: Registry, fmt: str) -> str:
    """The store's tables in `fmt` (csv, latex or json), read under the store's shared lock."""
    store = AttributionStore(store_path)
    with store.lock(shared=True):
        tables = Tables.of(read_input(store, registry))
    return WRITERS[fmt](tables)
