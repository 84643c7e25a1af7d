"""Ranks and rank correlations as pure numpy functions (no scipy at run time).

`competition_ranks` ranks a leaderboard (ties share the better rank: 1, 2, 2, 4); `spearman` and
`kendall_tau_b` measure how far two metrics agree on the order of the explainers they share, both with the
standard corrections for ties (average ranks; tau-b).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def competition_ranks(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1-based ranks of finite `values`, best first; equal values share the best rank of their group."""
    scores = np.asarray(values, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("competition_ranks needs finite values; leave unranked rows out first.")
    oriented = -scores if higher_is_better else scores
    return [int((oriented < v).sum()) + 1 for v in oriented]


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ascending ranks; tied values get the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    below = (x[None, :] < x[:, None]).sum(axis=1)
    equal = (x[None, :] == x[:, None]).sum(axis=1)
    return below + (equal + 1) / 2


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks (NaN when either side is constant)."""
    rx, ry = (average_ranks(v) - (len(v) + 1) / 2 for v in (x, y))
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b over all pairs: (concordant - discordant) / sqrt of the untied pair counts per side
    (NaN when either side is constant)."""
    sx, sy = (np.sign(np.subtract.outer(v, v))[np.triu_indices(len(v), 1)] for v in map(np.asarray, (x, y)))
    denominator = np.sqrt((sx**2).sum() * (sy**2).sum())
    return float((sx * sy).sum() / denominator) if denominator > 0 else float("nan")
