"""Reading a store into a `ReportInput`: every `/results/<metric>/<run_id>` run with its arrays.

The report never writes to the store; it reads under the store's shared lock so that a merge by a running
`attribench run` (which takes the exclusive lock) is never seen half-done.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from attribench_core.errors import StoreError
from attribench_core.registry import Registry
from attribench_core.report.content import ReportInput, StoredRun
from attribench_core.store import AttributionStore


def read_runs(store: AttributionStore) -> list[StoredRun]:
    """Every result run in the store, oldest first (run ids are UTC timestamps, so they sort by time)."""
    if not store.path.exists():
        return []
    store.check()
    runs = []
    with h5py.File(store.path, "r", locking=False) as f:
        results = f.get("results", {})
        for metric in results:
            for run_id in results[metric]:
                runs.append(_read_run(metric, run_id, results[metric][run_id]))
    return sorted(runs, key=lambda run: (run.run_id, run.metric))


def _read_run(metric: str, run_id: str, group: h5py.Group) -> StoredRun:
    try:
        payload = json.loads(group.attrs["payload"])
    except (KeyError, ValueError) as exc:
        raise StoreError(
            f"Result run results/{metric}/{run_id} has no readable payload ({exc}); "
            "check the store with `attribench store verify`."
        ) from None
    arrays: dict[str, np.ndarray] = {}

    def collect(name: str, item: h5py.HLObject) -> None:
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    group.visititems(collect)
    return StoredRun(metric, run_id, payload, arrays)


def read_input(store: AttributionStore, registry: Registry) -> ReportInput:
    """The store's runs with the store and the registry; an error naming the store if it holds nothing."""
    report = ReportInput(read_runs(store), store, registry)
    if not report.runs and not report.attribution_groups:
        raise StoreError(
            f"The store '{store.path}' holds no results; run a metric first "
            "(e.g. `attribench run core.relevance_mass`) or pass another --store."
        )
    return report
