"""Shared timing helpers for the bench scripts: interleaved repeats, median seconds."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Median seconds of each candidate, run alternately so that machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
