"""A metric's result for one explainer: headline value, named sub-values, curves, per-sample values,
uncertainty and skipped counts. `to_json()` is the `results[]` item of the `--json` contract (core.md §5).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Uncertainty:
    kind: str  # "bootstrap_ci95" or "std"
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
            else {"kind": self.uncertainty.kind, "low": self.uncertainty.low, "high": self.uncertainty.high},
            "n": self.n,
            "n_skipped": self.n_skipped,
            "skipped_reasons": dict(self.skipped),
        }


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, *, resamples: int = 1000, level: float = 0.95
) -> Uncertainty:
    """Percentile bootstrap confidence interval of the mean."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        m = float(values.mean()) if len(values) else float("nan")
        return Uncertainty("bootstrap_ci95", m, m)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Uncertainty(f"bootstrap_ci{round(level * 100)}", float(low), float(high))


def mean_result(
    name: str,
    values: np.ndarray,
    index: np.ndarray,
    rng: np.random.Generator,
    skipped: Counter[str] | dict[str, int] | None = None,
) -> Result:
    """A Result whose headline is the mean of per-sample `values` (NaNs are skipped, with a reason)."""
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
        uncertainty=bootstrap_ci(kept, rng),
        n=int(ok.sum()),
        skipped=dict(skipped),
    )
