"""Grouping a store's runs for a report: runs of one metric with the same options on the same dataset and
model are one experiment, repeated or extended (e.g. one explainer added later). The leaderboards and the
plugins' report sections group with `group_runs`, so that they agree on what belongs together.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from attribench_core.result import Result, StoredRun


@dataclass
class RunGroup:
    """Runs of one metric with the same options (apart from those grouping ignored), on one dataset and
    model unless grouping ignored them (then `dataset` and `model` are None)."""

    metric: str
    options: dict[str, Any]
    dataset: str | None
    model: str | None
    runs: list[StoredRun] = field(default_factory=list)  # oldest first
    name: str = ""  # the metric, plus what tells the group apart from the metric's other groups

    @property
    def results(self) -> dict[str, Result]:
        """The newest result per label over the group's runs."""
        return {label: result for run in self.runs for label, result in run.results.items()}

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.runs]

    @property
    def newest(self) -> StoredRun:
        return self.runs[-1]

    @property
    def higher_is_better(self) -> bool | None:
        """The direction the newest run saved (None: saved before runs carried it)."""
        return self.newest.higher_is_better

    @property
    def source(self) -> str:
        """The newest run's account of its data (provenance `dataset_source`), "" if none."""
        return next((s for r in reversed(self.runs) if (s := r.provenance.get("dataset_source"))), "")


def group_runs(
    runs: Iterable[StoredRun], *, ignore: Collection[str] = (), by_data: bool = True
) -> list[RunGroup]:
    """`runs` (oldest first) grouped by metric, options less `ignore` (e.g. SMERF's `setting`, when runs of
    one setting at a time make one study) and, with `by_data`, dataset and model; sorted by metric, then
    options, each group with a `name` unique among them."""
    found: dict[tuple[str, str, str | None, str | None], RunGroup] = {}
    for run in runs:
        options = {k: v for k, v in run.options.items() if k not in ignore}
        data = (run.provenance.get("dataset"), run.provenance.get("model")) if by_data else (None, None)
        key = (run.metric, _text(options), *data)
        found.setdefault(key, RunGroup(run.metric, options, *data)).runs.append(run)
    ordered = [found[key] for key in sorted(found, key=lambda k: (k[0], k[1], str(k[2]), str(k[3])))]
    for group in ordered:
        group.name = _name(group, [g for g in ordered if g.metric == group.metric])
    return ordered


def newest_group(groups: Iterable[RunGroup]) -> RunGroup | None:
    """The group holding the newest run (run ids are UTC timestamps); None when there is none."""
    return max(groups, key=lambda g: g.newest.run_id, default=None)


def differing_options(group: RunGroup, others: Collection[RunGroup]) -> dict[str, Any]:
    """The options in which `group` differs from any of `others`."""
    keys = sorted({k for g in others for k in g.options})
    return {k: group.options.get(k) for k in keys if len({_text(g.options.get(k)) for g in others}) > 1}


def _name(group: RunGroup, same_metric: list[RunGroup]) -> str:
    """The metric, followed by the options and the dataset/model in which its other groups differ."""
    differing = differing_options(group, same_metric)
    parts = [", ".join(f"{k}={v}" for k, v in differing.items())] if differing else []
    if len({(g.dataset, g.model) for g in same_metric}) > 1:
        parts.append(f"on {group.dataset} / {group.model}")
    return group.metric + (f" ({'; '.join(parts)})" if parts else "")


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
