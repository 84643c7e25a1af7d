"""Paired comparisons: does method A beat method B on one leaderboard, on the images both were scored on?

Each explainer row's per-sample values (the run's arrays `<label>/<name>` with `<label>/index`, the name
whose mean is the headline value) are matched by dataset index. For every pair of methods the mean of the
differences A − B is tested against 0 with a two-sided paired bootstrap (Efron & Tibshirani 1993, ch. 16:
resample the centred differences, p = the share of resampled means at least as far from 0 as the observed
one, counting the observed data as one resample), seeded with the board's run seed so the report is
reproducible. The p-values of one board are corrected for the number of pairs with Holm's step-down
method (Holm 1979); "A beats B" only when the corrected p is below `ALPHA` and the difference points in the
metric's better direction.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attribench_core.report.content import ReportInput, Section, StoredRun, Table, finite
from attribench_core.report.leaderboard import Board, boards, is_explainer
from attribench_core.result import Result

ALPHA = 0.05
RESAMPLES = 10_000
BLOCK = 1_000  # resamples drawn at once: a block of counts is BLOCK × images
COLUMNS = ["A", "B", "shared images", "mean A − B", "p", "p (Holm)", "verdict"]


@dataclass(frozen=True)
class Samples:
    """One method's per-sample values on a board, by dataset index."""

    index: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """The paired test of two methods on one board."""

    board: str
    a: str
    b: str
    n: int
    mean_diff: float
    p: float
    p_holm: float
    verdict: str


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the k-th smallest (from 0) is multiplied by
    m − k, then made non-decreasing along that order, and capped at 1."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(p_values[i])))
        adjusted[i] = running
    return adjusted.tolist()


def resample_counts(n: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """How often each of `n` samples is drawn in each of `size` bootstrap resamples (`[size, n]`)."""
    draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def paired_bootstrap_p_values(
    differences: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES
) -> np.ndarray:
    """Two-sided p-values of "the mean difference is 0", one per column of `differences` (`[images,
    pairs]`, the pairs measured on the same images, tested with the same resamples): (1 + the number of
    bootstrap means of the centred differences at least as far from 0 as the observed mean) /
    (1 + resamples), so never 0; 1 when every difference is 0. Resamples are drawn `BLOCK` at a time and
    averaged as one matrix product, so many pairs on many images stay cheap."""
    d = np.asarray(differences, dtype=np.float64)
    observed = np.abs(d.mean(axis=0))
    centred = d - d.mean(axis=0)
    tolerance = 1e-12 * np.maximum(1.0, observed)  # equal means summed in another order count as equal
    extreme = np.zeros(d.shape[1], dtype=np.int64)
    for start in range(0, resamples, BLOCK):
        means = resample_counts(len(d), rng, min(BLOCK, resamples - start)) @ centred / len(d)
        extreme += (np.abs(means) >= observed - tolerance).sum(axis=0)
    return (1 + extreme) / (1 + resamples)


def headline_name(result: Result) -> str | None:
    """The name of the result's per-sample values whose mean is its headline value (None if there is none)."""
    value = finite(result.value)
    if value is None or result.index is None:
        return None
    for name, values in result.per_sample.items():
        kept = np.asarray(values, dtype=np.float64)
        if kept.shape == result.index.shape and np.isclose(kept.mean(), value, rtol=1e-5):
            return name
    return None


def board_runs(report: ReportInput, board: Board) -> list[StoredRun]:
    """The runs a board was built from, oldest first."""
    return [r for r in report.runs_of(board.metric) if r.run_id in board.run_ids]


def samples(report: ReportInput, board: Board) -> dict[str, Samples]:
    """Each explainer row's headline per-sample values, from the run its board result came from (the
    newest), for the rows whose run stored them."""
    source: dict[str, Result] = {}
    for run in board_runs(report, board):
        source.update({label: r for label, r in run.results.items() if is_explainer(label)})
    out = {}
    for label, result in sorted(source.items()):
        name = headline_name(result)
        if name is not None:
            out[label] = Samples(np.asarray(result.index), np.asarray(result.per_sample[name]))
    return out


def shared_differences(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray]:
    """The dataset indices both were scored on (sorted), and A − B on them."""
    shared, ia, ib = np.intersect1d(a.index, b.index, return_indices=True)
    return shared, a.values[ia].astype(np.float64) - b.values[ib].astype(np.float64)


def verdict(a: str, b: str, mean_diff: float, p_holm: float, higher_is_better: bool | None) -> str:
    """ "A beats B" (or the reverse) when the corrected p is below `ALPHA`, else "no evidence"."""
    if p_holm >= ALPHA or mean_diff == 0:
        return "no evidence of a difference"
    if higher_is_better is None:
        return "differ (direction unknown)"
    a_better = (mean_diff > 0) == higher_is_better
    return f"{a} beats {b}" if a_better else f"{b} beats {a}"


def compare(board: Board, by_method: dict[str, Samples], seed: int) -> list[Comparison]:
    """Every pair of methods (in name order) with at least 2 shared images, Holm-corrected over the board."""
    tested = []
    on_images: dict[bytes, list[int]] = defaultdict(list)  # pairs on the same images share resamples
    for a, b in itertools.combinations(sorted(by_method), 2):
        shared, d = shared_differences(by_method[a], by_method[b])
        if len(d) >= 2:
            on_images[shared.astype(np.int64).tobytes()].append(len(tested))
            tested.append((a, b, d))
    rng = np.random.default_rng(seed)
    p_values = np.empty(len(tested))
    for members in on_images.values():
        columns = np.stack([tested[i][2] for i in members], axis=1)
        p_values[members] = paired_bootstrap_p_values(columns, rng)
    corrected = holm(p_values.tolist())
    return [
        Comparison(
            board.name,
            a,
            b,
            len(d),
            float(d.mean()),
            p,
            q,
            verdict(a, b, float(d.mean()), q, board.higher_is_better),
        )
        for (a, b, d), p, q in zip(tested, p_values.tolist(), corrected, strict=True)
    ]


def seed_of(report: ReportInput, board: Board) -> int:
    """The seed of the board's newest run (0 when it recorded none)."""
    runs = board_runs(report, board)
    return int(runs[-1].provenance.get("seed") or 0) if runs else 0


def comparisons(report: ReportInput) -> list[Comparison]:
    """The paired comparisons of every board whose runs stored per-sample values."""
    out = []
    for board in boards(report):
        out += compare(board, samples(report, board), seed_of(report, board))
    return out


def sections(report: ReportInput) -> list[Section]:
    """One table per board: A vs B, the shared images, the mean difference, p, Holm's p and the verdict."""
    found = comparisons(report)
    if not found:
        return []
    tables = [
        Table(
            name,
            COLUMNS,
            [[c.a, c.b, c.n, c.mean_diff, c.p, c.p_holm, c.verdict] for c in found if c.board == name],
        )
        for name in dict.fromkeys(c.board for c in found)
    ]
    text = (
        "For every pair of methods on a leaderboard, the mean difference A − B of their per-sample values on "
        f"the images both were scored on, and a two-sided paired bootstrap test of 'no difference' "
        f"({RESAMPLES:,} resamples, seeded with the run's seed). p (Holm): corrected for the number of pairs "
        f"on that leaderboard (Holm's step-down method). A method beats another only when p (Holm) < {ALPHA} "
        "and the difference points in the metric's better direction. The smallest p the test can give is "
        f"{1 / (RESAMPLES + 1):.1g}."
    )
    return [Section("Paired comparisons", text, tables)]
