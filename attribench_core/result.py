"""A metric's result for one explainer: headline value, named sub-values, curves, tables, per-sample values,
uncertainty and skipped counts. `to_json()` is the `results[]` item of the `--json` contract (core.md §5),
`arrays()` its per-sample arrays as the store keeps them, and `Result.from_json(item, arrays)` reads both
back into an equal Result; `StoredRun` is one saved run read back the same way. Non-finite numbers are
`null` in JSON (`json_text`), NaN again when read back.

Intervals (docs/core.md, "Uncertainty"): a percentile bootstrap of the mean for continuous scores
(`bootstrap_ci`), of any statistic, also within strata (`bootstrap_interval`), and Wilson's score interval
for rates (`wilson_ci`), which stays informative at 0/N and N/N where the bootstrap collapses to a point.
Below `SMALL_N` evaluated samples an interval is flagged as unreliable (`small_n` in JSON, `*` in tables).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
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

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": _finite_or_none(self.low), "high": _finite_or_none(self.high)}

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Uncertainty:
        return cls(item["kind"], _float(item["low"]), _float(item["high"]))


@dataclass
class Curve:
    """y over a named x-axis (e.g. fraction of pixels removed)."""

    x_name: str
    x: list[float]
    y: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "x_name": self.x_name,
            "x": [_finite_or_none(x) for x in self.x],
            "y": [_finite_or_none(y) for y in self.y],
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Curve:
        return cls(item["x_name"], [_float(x) for x in item["x"]], [_float(y) for y in item["y"]])


Cell = str | float | None


@dataclass
class ResultTable:
    """Rows under named columns that a metric reports beside its scalars, e.g. SMERF's mean score per
    (setting, bucket). Cells are text or numbers; a non-finite number is `null` in JSON and NaN in Python."""

    columns: list[str]
    rows: list[list[Cell]]

    def to_json(self) -> dict[str, Any]:
        cells = [[c if isinstance(c, str) or c is None else _finite_or_none(c) for c in r] for r in self.rows]
        return {"columns": list(self.columns), "rows": cells}

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ResultTable:
        rows = [[c if isinstance(c, str) else _float(c) for c in row] for row in item["rows"]]
        return cls(list(item["columns"]), rows)

    def records(self) -> list[dict[str, Cell]]:
        """One dict per row, keyed by column."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


INDEX = "index"  # the name of the per-sample dataset indices among `Result.arrays()`


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
    tables: dict[str, ResultTable] = field(default_factory=dict)

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
        values.update({name: curve.to_json() for name, curve in self.curves.items()})
        return {
            "explainer": explainer,
            "value": _finite_or_none(self.value),
            "values": values,
            "tables": {name: table.to_json() for name, table in self.tables.items()},
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_json(),
            "n": self.n,
            "small_n": self.small_n,
            "n_skipped": self.n_skipped,
            "skipped_reasons": dict(self.skipped),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-sample values and their dataset indices (`INDEX`), as the store saves them."""
        if INDEX in self.per_sample:
            raise ValueError(f"A per-sample value may not be named '{INDEX}': it holds the dataset indices.")
        return {**self.per_sample, **({} if self.index is None else {INDEX: self.index})}

    @classmethod
    def from_json(cls, item: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> Result:
        """The Result that `to_json()` (and `arrays()`) wrote; keys an older store lacks take defaults."""
        arrays = dict(arrays or {})
        index = arrays.pop(INDEX, None)
        values = item.get("values", {})
        uncertainty = item.get("uncertainty")
        return cls(
            value=_float(item.get("value")),
            values={k: _float(v) for k, v in values.items() if not isinstance(v, dict)},
            curves={k: Curve.from_json(v) for k, v in values.items() if isinstance(v, dict)},
            per_sample=arrays,
            index=index,
            uncertainty=None if uncertainty is None else Uncertainty.from_json(uncertainty),
            n=int(item.get("n", 0)),
            skipped={k: int(v) for k, v in item.get("skipped_reasons", {}).items()},
            tables={k: ResultTable.from_json(v) for k, v in item.get("tables", {}).items()},
        )

    def __eq__(self, other: object) -> bool:
        """Equal JSON (NaN equals NaN, as both are `null`) and equal per-sample arrays."""
        if not isinstance(other, Result):
            return NotImplemented
        mine, theirs = self.arrays(), other.arrays()
        return (
            self.to_json("") == other.to_json("")
            and mine.keys() == theirs.keys()
            and all(np.array_equal(mine[k], theirs[k], equal_nan=True) for k in mine)
        )


@dataclass
class StoredRun:
    """One `attribench run` saved under `/results/<metric>/<run_id>`: its `--json` outcome (`payload`:
    metric, higher_is_better, category, options, results[], provenance, models) and its per-sample arrays
    (`"<label>/<name>"`), read back as typed values."""

    metric: str
    run_id: str
    payload: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        return self.payload.get("options", {})

    @property
    def provenance(self) -> dict[str, Any]:
        """Seed, versions, dataset, model, … (`RunOutcome.provenance`)."""
        return self.payload.get("provenance", {})

    @property
    def models(self) -> list[dict[str, Any]]:
        """The check of every model the run used (`payload["models"]`)."""
        return self.payload.get("models", [])

    @property
    def higher_is_better(self) -> bool | None:
        """The metric's direction as the run saved it; None for a run saved before directions were."""
        return self.payload.get("higher_is_better")

    @property
    def category(self) -> str | None:
        """The metric's category as the run saved it (e.g. "robustness"); None for a run saved before
        categories were."""
        return self.payload.get("category")

    @cached_property
    def results(self) -> dict[str, Result]:
        """The results keyed by their label (explainer, or an extra row such as `linear:gt`)."""
        return {
            item["explainer"]: Result.from_json(item, self._arrays_of(item["explainer"]))
            for item in self.payload.get("results", [])
        }

    def _arrays_of(self, label: str) -> dict[str, np.ndarray]:
        prefix = f"{label}/"
        return {path[len(prefix) :]: a for path, a in self.arrays.items() if path.startswith(prefix)}


def run_arrays(results: Mapping[str, Result]) -> dict[str, np.ndarray]:
    """Every result's `arrays()` under `"<label>/<name>"`, as `StoredRun.arrays` reads them back."""
    return {f"{label}/{name}": a for label, r in results.items() for name, a in r.arrays().items()}


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf) replaced by None and numpy scalars and arrays made
    Python's, so that the JSON holds `null` where a number is undefined (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, **dumps: Any) -> str:
    """`value` as strict JSON text (`json_safe`, anything else not serialisable as its str)."""
    return json.dumps(json_safe(value), allow_nan=False, default=str, **dumps)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _float(value: float | None) -> float:
    """A JSON number back as a float: `null` (a non-finite number) as NaN."""
    return float("nan") if value is None else float(value)


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
