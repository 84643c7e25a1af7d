"""Reading a store into a `ReportInput`: every result run (`results/<metric>/<run_id>`) with its arrays.

The report never writes to the store; it reads under the store's shared lock so that a commit by a running
`attribench run` (which takes the exclusive lock) is never seen half-done.
"""

from __future__ import annotations

from attribench_core.errors import StoreError
from attribench_core.registry import Registry
from attribench_core.report.content import ReportInput, StoredRun
from attribench_core.store import AttributionStore


def read_runs(store: AttributionStore) -> list[StoredRun]:
    """Every result run in the store, oldest first (run ids are UTC timestamps, so they sort by time)."""
    if not store.path.exists():
        return []
    store.check()
    runs = [StoredRun(r.metric, r.run_id, r.payload, r.arrays) for r in store.results()]
    return sorted(runs, key=lambda run: (run.run_id, run.metric))


def read_input(store: AttributionStore, registry: Registry) -> ReportInput:
    """The store's runs with the store and the registry; an error naming the store if it holds nothing."""
    report = ReportInput(read_runs(store), store, registry)
    if not report.runs and not report.attribution_groups:
        raise StoreError(
            f"The store '{store.path}' holds no results; run a metric first "
            "(e.g. `attribench run core.relevance_mass`) or pass another --store."
        )
    return report
