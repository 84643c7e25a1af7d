"""Rank agreement across metrics: do two metrics order the explainers they share the same way?

Each leaderboard with a known direction counts as one metric. Values are oriented so that larger is better
before correlating, so +1 always means the same order and -1 the reverse, whatever the directions. A pair
is compared over the explainers that both rank, and only when they share at least `MIN_SHARED`.
"""

from __future__ import annotations

import numpy as np

from attribench_core.report import figures
from attribench_core.report.content import Block, ReportInput, Section, Table
from attribench_core.report.leaderboard import Board, boards
from attribench_core.report.ranking import kendall_tau_b, spearman

MIN_SHARED = 3
FEW_METHODS = 5  # below this many shared explainers a rank correlation says little


def caveat(found: list[list[object]]) -> str:
    """A warning when some pairs rest on fewer than `FEW_METHODS` explainers ("" when none does): with 3
    methods, 1 in 6 random orders agrees perfectly (rho = 1), with 4, 1 in 24."""
    few = [p for p in found if isinstance(p[2], int) and p[2] < FEW_METHODS]
    if not few:
        return ""
    return (
        f"\n\nCaution: {len(few)} of {len(found)} pair(s) rest on fewer than {FEW_METHODS} methods. With so "
        "few, even perfect agreement happens by chance often (1 in 6 random orders of 3 methods, 1 in 24 of "
        "4), so read these correlations as anecdotes, not evidence."
    )


def oriented(board: Board) -> dict[str, float]:
    """The board's explainer values, negated when lower is better (so larger is better)."""
    sign = 1.0 if board.higher_is_better else -1.0
    return {label: sign * value for label, value in board.explainer_values().items()}


def pairs(ranked: list[Board]) -> list[list[object]]:
    """`[metric a, metric b, shared, spearman, kendall]` for every pair sharing at least `MIN_SHARED`."""
    out: list[list[object]] = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            va, vb = oriented(a), oriented(b)
            shared = sorted(set(va) & set(vb))
            if len(shared) < MIN_SHARED:
                continue
            x, y = [va[k] for k in shared], [vb[k] for k in shared]
            out.append([a.name, b.name, len(shared), spearman(x, y), kendall_tau_b(x, y)])
    return out


def sections(report: ReportInput) -> list[Section]:
    """The rank agreement section: the pairwise table and a matrix of Spearman's rho."""
    ranked = [b for b in boards(report) if b.higher_is_better is not None]
    found = pairs(ranked)
    text = (
        "Spearman's rho and Kendall's tau-b between the rankings of every pair of metrics, over the "
        f"explainers both rank (pairs sharing fewer than {MIN_SHARED} are left out; metrics with an unknown "
        "direction too). +1: the same order, -1: the reverse. Benchmarks that measure the same property "
        "should agree; when they do not, the choice of metric decides the winner."
    )
    if not found:
        return [Section("Rank agreement", text + " No pair of metrics qualifies in this store.")]
    text += caveat(found)
    blocks: list[Block] = [
        Table("Rank agreement", ["metric a", "metric b", "shared explainers", "Spearman", "Kendall"], found)
    ]
    names = sorted({str(p[0]) for p in found} | {str(p[1]) for p in found})
    where = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(matrix, 1.0)
    for a, b, _, rho, _ in found:
        matrix[where[a], where[b]] = matrix[where[b], where[a]] = rho
    size = 1.2 + 0.6 * len(names)
    fig, ax = figures.new_figure(size + 1.0, size)
    figures.heatmap(ax, matrix, names, names)
    blocks.append(figures.render(fig, "Spearman's rho between metrics", "Blank: fewer shared explainers."))
    return [Section("Rank agreement", text, blocks)]
