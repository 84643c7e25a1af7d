"""Matplotlib figures as PNG blocks, drawn off-screen (Agg), with the few chart shapes the sections share."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from attribench_core.report.content import Figure

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure

DPI = 110


def new_figure(width: float = 6.4, height: float = 3.6) -> tuple[matplotlib.figure.Figure, Any]:
    """A figure with one axes, drawn with the Agg backend (no display; pyplot's global state untouched)."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def new_grid(rows: int, cols: int, cell: float = 1.5) -> tuple[matplotlib.figure.Figure, np.ndarray]:
    """A figure with a `rows` x `cols` array of square axes (`cell` inches each), e.g. for image grids."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(cols * cell, rows * cell + 0.3), dpi=DPI, layout="constrained")
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False))


def render(fig: matplotlib.figure.Figure, title: str, caption: str = "") -> Figure:
    """The figure as a PNG block."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return Figure(title, buffer.getvalue(), caption)


def bars(
    ax: matplotlib.axes.Axes,
    labels: Sequence[str],
    values: Sequence[float],
    low: Sequence[float | None] | None = None,
    high: Sequence[float | None] | None = None,
    *,
    ylabel: str = "",
) -> None:
    """Vertical bars with optional error bars from `low`/`high` (absolute bounds, e.g. a 95 % CI; a None
    bound draws no bar on that side)."""
    positions = range(len(labels))
    errors = None
    if low is not None and high is not None:
        errors = [
            [0.0 if lo is None else max(v - lo, 0.0) for v, lo in zip(values, low, strict=True)],
            [0.0 if hi is None else max(hi - v, 0.0) for v, hi in zip(values, high, strict=True)],
        ]
    ax.bar(positions, values, yerr=errors, capsize=3, color="#4c72b0")
    ax.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)


def curves(
    ax: matplotlib.axes.Axes,
    lines: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    xlabel: str = "",
    ylabel: str = "",
) -> None:
    """One line per label from `(x, y)` (None in y leaves a gap), with a legend."""
    for label, (x, y) in lines.items():
        ax.plot(x, [float("nan") if v is None else v for v in y], label=label, linewidth=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if lines:
        ax.legend(fontsize=7)


def heatmap(
    ax: matplotlib.axes.Axes,
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "RdBu",
) -> None:
    """A coloured matrix with each finite cell's value written in it (NaN cells stay blank)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    ax.imshow(np.ma.masked_invalid(matrix), vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            colour = "white" if abs(value) > 0.6 * max(abs(vmin), abs(vmax)) else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour)
