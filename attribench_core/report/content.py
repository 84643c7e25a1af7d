"""What a report is made of, and what the store gives it.

A report is a list of `Section`s, each a title, some text and a list of blocks (`Table`, `Figure`). The
core builds the general sections (leaderboards, rank agreement, gallery, provenance); a plugin adds its
own by registering a function `(report: ReportInput) -> list[Section]` with the `register_reports` hook.
It returns `[]` when the store holds nothing it can show (missing pieces are simply left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from attribench_core.errors import AttribenchError
from attribench_core.result import Result, StoredRun

if TYPE_CHECKING:
    from attribench_core.registry import Registry
    from attribench_core.store import AttributionStore


@dataclass
class Table:
    """Rows of cells under named columns (cells are str, int, float or None; floats print with 3 decimals)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG image (bytes), e.g. from `figures.render(fig)`."""

    title: str
    png: bytes
    caption: str = ""


Block = Table | Figure


@dataclass
class Section:
    """A titled part of the report: plain text (paragraphs split on blank lines), then tables and figures."""

    title: str
    text: str = ""
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ReportInput:
    """Everything a section may draw on: the store's runs (oldest first, `AttributionStore.runs`), the
    store itself (attributions) and the registry (datasets for the gallery; directions of runs saved
    without one)."""

    runs: list[StoredRun]
    store: AttributionStore
    registry: Registry

    @cached_property
    def attribution_groups(self) -> list[dict[str, Any]]:
        """The store's attribution groups (`store.groups()` entries: path, n, shape, attrs), read once."""
        return [g for g in self.store.groups() if g["kind"] == "attributions"]

    def runs_of(self, metric: str) -> list[StoredRun]:
        """The runs of one qualified metric (`smerf.afl`), oldest first."""
        return [r for r in self.runs if r.metric == metric]

    def higher_is_better(self, metric: str) -> bool | None:
        """The direction `metric`'s newest run saved; for runs saved before runs carried it, the one the
        metric declares; None when neither is known (its plugin is not installed, or does not load)."""
        saved = self._saved(metric, "higher_is_better")
        if saved is not None:
            return saved
        declared = self._declared(metric, "higher_is_better")
        return None if declared is None else bool(declared)

    def category(self, metric: str) -> str | None:
        """The category (e.g. "robustness") `metric`'s newest run saved; for runs saved before runs carried
        it, the one the metric declares; None when neither is known."""
        saved = self._saved(metric, "category")
        return saved if saved is not None else self._declared(metric, "category")

    def _saved(self, metric: str, name: str) -> Any:
        """`name` as the newest run of `metric` that saved it holds it; None when none did."""
        return next((v for r in reversed(self.runs_of(metric)) if (v := getattr(r, name)) is not None), None)

    def _declared(self, metric: str, name: str) -> Any:
        """The installed metric's class attribute `name`; None when it is not installed or lacks it."""
        try:
            return getattr(self.registry.resolve("metric", metric).load(), name)
        except (AttribenchError, AttributeError):
            return None


def options_text(options: dict[str, Any]) -> str:
    """Options as `k=v, k=v` (sorted by name), or "" when there are none."""
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is missing or not finite (a table cell shows None as blank)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def uncertainty_bounds(result: Result) -> tuple[float | None, float | None]:
    """The finite (low, high) of a result's uncertainty, None where there is none."""
    if result.uncertainty is None:
        return None, None
    return finite(result.uncertainty.low), finite(result.uncertainty.high)


def model_checks(runs: list[StoredRun]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, weights hash) used by `runs` (oldest first), the check the newest of them saved
    (`StoredRun.models`: summary numbers, `passed`, the check's `table`; no check for `--weights` files)."""
    return {(c["model"], c["weights_hash"]): c for run in runs for c in run.models}


def passed_label(check: dict[str, Any]) -> str:
    """ "yes", "no", or "not checked" (weights given with --weights)."""
    return {True: "yes", False: "no"}.get(check.get("passed"), "not checked")


def diagnostics_text(summary: dict[str, dict[str, Any]]) -> str | None:
    """A group's per-map diagnostics in words: "summation gap: median 0.012, max 0.2 over 8 maps (note)"."""
    parts = []
    for name, d in summary.items():
        values = f"median {d['median']:.3g}, max {d['max']:.3g}" if d["n"] else "no values"
        note = f" ({d['note']})" if d.get("note") else ""
        parts.append(f"{name.replace('_', ' ')}: {values} over {d['n']} maps{note}")
    return "; ".join(parts) or None
