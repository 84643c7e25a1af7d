"""Reading a store into a `ReportInput`: every result run, typed, through `AttributionStore.runs`.

The report never writes to the store; the store reads under its shared lock, so that a commit by a running
`attribench run` (which takes the exclusive lock) is never seen half-done.
"""

from __future__ import annotations

from attribench_core.errors import StoreError
from attribench_core.registry import Registry
from attribench_core.report.content import ReportInput
from attribench_core.store import AttributionStore


def read_input(store: AttributionStore, registry: Registry) -> ReportInput:
    """The store's runs with the store and the registry; an error naming the store if it holds nothing."""
    report = ReportInput(store.runs(), store, registry)
    if not report.runs and not report.attribution_groups:
        raise StoreError(
            f"The store '{store.path}' holds no results; run a metric first "
            "(e.g. `attribench run core.relevance_mass`) or pass another --store."
        )
    return report
