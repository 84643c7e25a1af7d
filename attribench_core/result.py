"""A metric's result for one explainer: headline value, named sub-values, curves, per-sample values,
uncertainty and skipped counts. `to_json()` is the `results[]` item of the `--json` contract (core.md §5).

Intervals (docs/core.md, "Uncertainty"): a percentile bootstrap of the mean for continuous scores
(`bootstrap_ci`), of any statistic, also within strata (`bootstrap_interval`), and Wilson's score interval
for rates (`wilson_ci`), which stays informative at 0/N and N/N where the bootstrap collapses to a point.
Below `SMALL_N` evaluated samples an interval is flagged as unreliable (`small_n` in JSON, `*` in tables).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

SMALL_N = 30  # below this many evaluated samples an interval is too unreliable to read as 95 %


@dataclass
class Uncertainty:
    """An interval and what it is: `bootstrap_ci95`, `stratified_bootstrap_ci95`, `wilson_ci95`,
    `mover_wilson_ci95`, or a descriptive spread that is not a confidence interval
    (`range_over_random_sets`)."""

    kind: str
    low: float
    high: float


@dataclass
class Curve:
    """y over a named x-axis (e.g. fraction of pixels removed)."""

    x_name: str
    x: list[float]
    y: list[float]


@dataclass
class Result:
    value: float
    values: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    index: np.ndarray | None = None  # dataset indices of the per-sample values
    uncertainty: Uncertainty | None = None
    n: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def small_n(self) -> bool:
        """Too few evaluated samples (< `SMALL_N`) for the interval to hold its nominal coverage."""
        return self.n < SMALL_N

    def to_json(self, explainer: str) -> dict[str, Any]:
        """The `results[]` item: curves sit in `values` beside the scalars, so their names must differ."""
        clash = sorted(set(self.values) & set(self.curves))
        if clash:
            raise ValueError(f"Result of {explainer} has a value and a curve both named {', '.join(clash)}.")
        values: dict[str, Any] = {k: _finite_or_none(v) for k, v in self.values.items()}
        for name, curve in self.curves.items():
            values[name] = {
                "x_name": curve.x_name,
                "x": list(curve.x),
                "y": [_finite_or_none(y) for y in curve.y],
            }
        return {
            "explainer": explainer,
            "value": _finite_or_none(self.value),
            "values": values,
            "uncertainty": None
            if self.uncertainty is None
            else {
                "kind": self.uncertainty.kind,
                "low": _finite_or_none(self.uncertainty.low),
                "high": _finite_or_none(self.uncertainty.high),
            },
            "n": self.n,
            "small_n": self.small_n,
            "n_skipped": self.n_skipped,
            "skipped_reasons": dict(self.skipped),
        }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _percentiles(kind: str, statistics: np.ndarray, level: float) -> Uncertainty:
    tail = (1 - level) / 2 * 100
    finite = statistics[np.isfinite(statistics)]
    if not len(finite):
        return Uncertainty(f"{kind}_ci{round(level * 100)}", float("nan"), float("nan"))
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Uncertainty(f"{kind}_ci{round(level * 100)}", float(low), float(high))


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, *, resamples: int = 1000, level: float = 0.95
) -> Uncertainty:
    """Percentile bootstrap confidence interval of the mean."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        m = float(values.mean()) if len(values) else float("nan")
        return Uncertainty("bootstrap_ci95", m, m)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return _percentiles("bootstrap", means, level)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    strata: np.ndarray,
    rng: np.random.Generator,
    *,
    resamples: int = 1000,
    level: float = 0.95,
) -> Uncertainty:
    """Percentile bootstrap interval of any `statistic(index)` of the samples `index` points at.

    `strata` labels each sample; a resample draws, within every stratum, as many samples as it holds, with
    replacement (one label for all: the plain bootstrap). The statistic is recomputed from scratch on each
    resample, so decisions it takes on the data (a bucket's minimum, a step judged real) vary with it.
    Resamples whose statistic is not finite are left out. Kind: `bootstrap_ci95`, or
    `stratified_bootstrap_ci95` with more than one stratum.
    """
    strata = np.asarray(strata)
    members = [np.flatnonzero(strata == label) for label in np.unique(strata)]
    draws = np.empty((resamples, len(strata)), dtype=np.int64)
    start = 0
    for member in members:
        draws[:, start : start + len(member)] = member[rng.integers(0, len(member), (resamples, len(member)))]
        start += len(member)
    values = np.array([statistic(draw) for draw in draws], dtype=np.float64)
    return _percentiles("stratified_bootstrap" if len(members) > 1 else "bootstrap", values, level)


def wilson_ci(successes: int, n: int, *, level: float = 0.95) -> Uncertainty:
    """Wilson's score interval for a rate `successes / n` (Wilson 1927): unlike the bootstrap it has width
    at 0/n and n/n (32/32 gives [0.893, 1])."""
    if n == 0:
        return Uncertainty(f"wilson_ci{round(level * 100)}", float("nan"), float("nan"))
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return Uncertainty(f"wilson_ci{round(level * 100)}", float(low), float(high))


def mean_of_rates_ci(successes: np.ndarray, trials: np.ndarray, *, level: float = 0.95) -> Uncertainty:
    """Interval of the unweighted mean of several rates (one per category): Wilson's interval of each rate,
    combined by MOVER (Zou & Donner 2008): low = m − √Σ((pᵢ − lᵢ)/K)², high = m + √Σ((uᵢ − pᵢ)/K)². With one
    rate it is Wilson's; like it, it keeps its width when every category is all hits or all misses."""
    successes, trials = np.asarray(successes), np.asarray(trials)
    rates = successes / trials
    bounds = np.array(
        [
            [u.low, u.high]
            for u in (wilson_ci(int(k), int(n), level=level) for k, n in zip(successes, trials, strict=True))
        ]
    )
    k, mean = len(rates), float(rates.mean())
    low = mean - float(np.sqrt((((rates - bounds[:, 0]) / k) ** 2).sum()))
    high = mean + float(np.sqrt((((bounds[:, 1] - rates) / k) ** 2).sum()))
    return Uncertainty(f"mover_wilson_ci{round(level * 100)}", max(0.0, low), min(1.0, high))


def mean_result(
    name: str,
    values: np.ndarray,
    index: np.ndarray,
    rng: np.random.Generator,
    skipped: Counter[str] | dict[str, int] | None = None,
    *,
    rate: bool = False,
) -> Result:
    """A Result whose headline is the mean of per-sample `values` (NaNs are skipped, with a reason).

    `rate=True` for 0/1 values (a hit, a success): the interval is Wilson's instead of the bootstrap's."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    skipped = Counter(skipped or {})
    if (~ok).any():
        skipped["non-finite value"] += int((~ok).sum())
    kept = values[ok]
    mean = float(kept.mean()) if len(kept) else float("nan")
    return Result(
        value=mean,
        values={name: mean},
        per_sample={name: kept},
        index=np.asarray(index)[ok],
        uncertainty=_rate_ci(kept) if rate else bootstrap_ci(kept, rng),
        n=int(ok.sum()),
        skipped=dict(skipped),
    )


def _rate_ci(values: np.ndarray) -> Uncertainty:
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("A rate's per-sample values must be 0 or 1; use the bootstrap for other scores.")
    return wilson_ci(int(values.sum()), len(values))
