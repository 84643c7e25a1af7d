"""Randomisation curves: how much a method's maps change as more of the model is randomised.

A metric of category "randomisation" (e.g. the model parameter randomisation test, Adebayo et al. 2018)
may give each explainer's result curves: the similarity of the maps before and after randomising the top k
layers, over k. Per leaderboard of such a metric whose results carry curves, this section draws one figure
per curve name with one line per method. A result table with columns `step` and `layer` (the layer
randomised at each step) names the steps: on the x-axis when there are few, and in a table below.
"""

from __future__ import annotations

from typing import Any

from attribench_core.report import figures
from attribench_core.report.content import Block, Figure, ReportInput, Section, Table
from attribench_core.report.leaderboard import Board, boards
from attribench_core.report.matrix import direction
from attribench_core.result import Curve

CATEGORY = "randomisation"
NAMED_TICKS = 12  # at most this many steps are labelled with their layer names on the x-axis
LAYER_COLUMNS = ("step", "layer")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # hollow, shrinking: lines that coincide stay visible


def curves_of(board: Board, name: str) -> dict[str, Curve]:
    """The curve `name` of every result on the board that has it, by label."""
    return {label: r.curves[name] for label, r in sorted(board.results.items()) if name in r.curves}


def curve_names(board: Board) -> list[str]:
    """The names of the curves the board's results carry, in the order the results (by label) give them."""
    return list(dict.fromkeys(name for _, r in sorted(board.results.items()) for name in r.curves))


def layer_names(board: Board) -> dict[float, str]:
    """Step → the layer randomised at that step, from the first result (by label) with a table holding
    `step` and `layer` columns; empty when none has one."""
    for _, result in sorted(board.results.items()):
        for table in result.tables.values():
            if set(LAYER_COLUMNS) <= set(table.columns):
                return {float(r["step"]): str(r["layer"]) for r in table.records() if r["step"] is not None}
    return {}


def axis_names(steps: list[float], layers: dict[float, str]) -> list[str] | None:
    """The layer name of each step, for the x-axis; None when there are too many steps to read or a step
    has no name."""
    if len(steps) > NAMED_TICKS or not all(s in layers for s in steps):
        return None
    return [layers[s] for s in steps]


def mark_apart(lines: list[Any]) -> None:
    """Give each line its own hollow marker, each smaller than the last, so that methods with equal curves
    (maps that never change sit at the same similarity) are all seen."""
    for k, line in enumerate(lines):
        line.set_marker(MARKERS[k % len(MARKERS)])
        line.set_markersize(max(11 - 2 * k, 3))
        line.set_markerfacecolor("none")
    if lines:
        line.axes.legend(fontsize=7)  # again, so that the legend shows the markers


def figure(board: Board, name: str, layers: dict[float, str]) -> Figure:
    """One line per method of the curve `name`; the layer names on the x-axis when there are few steps."""
    found = curves_of(board, name)
    fig, ax = figures.new_figure()
    lines = {label: (curve.x, curve.y) for label, curve in found.items()}
    figures.curves(ax, lines, xlabel=next(iter(found.values())).x_name, ylabel=name)
    mark_apart(ax.lines)
    steps = sorted({x for curve in found.values() for x in curve.x})
    names = axis_names(steps, layers)
    if names is not None:
        ax.set_xticks(steps, names, rotation=45, ha="right", fontsize=7)
    caption = f"{name} per method over the steps; " + (
        "the x-axis names the layer randomised at each step."
        if names is not None
        else "the table below names the layer of each step."
        if layers
        else "the steps are not named."
    )
    return figures.render(fig, f"{board.name}: {name}", caption)


def section(board: Board) -> Section:
    """A board's figures, one per curve name, and the table of its layers when the results name them."""
    layers = layer_names(board)
    blocks: list[Block] = [figure(board, name, layers) for name in curve_names(board)]
    if layers:
        rows = [[int(step) if step.is_integer() else step, layer] for step, layer in sorted(layers.items())]
        blocks.append(
            Table(f"{board.name}: layers", list(LAYER_COLUMNS), rows, "The layer randomised at each step.")
        )
    where = f" on {board.dataset} / {board.model}" if board.dataset else ""
    text = (
        f"{board.metric}{where}: how each method's maps change as the model is randomised step by step, "
        f"newest result per method over {len(board.run_ids)} run(s). Its headline value (in the matrix and "
        f"its leaderboard) summarises these curves; better: {direction(board)}. A method whose maps depend "
        "on the model falls away from the similarity of unchanged maps; one whose curve stays flat does not "
        "depend on what was randomised."
    )
    return Section(f"Randomisation curves: {board.name}", text, blocks)


def sections(report: ReportInput) -> list[Section]:
    """One section per leaderboard of a randomisation metric whose results carry curves."""
    return [section(b) for b in boards(report) if b.category == CATEGORY and curve_names(b)]
