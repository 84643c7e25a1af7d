"""Growth laws of the attribution store (issue 14): what a commit costs as the store grows, the disk it
needs, building a store run by run, and reading maps back.

1. An 8-map run (maps of 3x224x224 float32, journalled then committed) against stores of 0.1 / 1 / 4 GB
   (one group each, built with 512-map runs; the run adds to it), the stores taking turns: milliseconds
   (median), and the disk peak during the commit above the store.
2. Building a store run by run (8-map runs) to 1 GB and to 2 GB: seconds.
3. Reading every map back in batches of 32 (a reader kept open, as a metric does) from groups of 1k / 10k /
   100k maps of 3x16x16 (committed 1,024 maps at a time): µs per map, the open included.

Noise maps (incompressible, as real gradients are) and the store's default compression (none).
Run: python bench/store_growth.py [--sizes-gb 0.1 1 4] [--build-gb 1 2] [--read-maps 1000 10000 100000]
(an empty list skips that part; the stores are built in --folder, default a temporary folder)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from timing import machine

from attribench_core.store import AttributionStore, GroupKey

KEY = GroupKey("bench.noise@0", "bench.model@0", "bench.explainer@0")
PROVENANCE = {"explainer": "bench.explainer", "seed": 0}
LARGE = (3, 224, 224)
SMALL = (3, 16, 16)


class Writer:
    """Journals maps of one shape into a store, run by run, with consecutive dataset indices."""

    def __init__(self, store: AttributionStore, shape: tuple[int, ...]):
        self.store, self.shape, self.n = store, shape, 0
        self.block = np.random.default_rng(0).standard_normal((256, *shape), dtype=np.float32)

    def journal(self, count: int, batch: int = 64) -> None:
        for first in range(self.n, self.n + count, batch):
            index = np.arange(first, min(first + batch, self.n + count))
            rows = self.block[: len(index)]
            self.store.write_batch(KEY, PROVENANCE, index, rows, index % 1000, index % 1000)
        self.n += count

    def run(self, count: int, batch: int = 64) -> None:
        self.journal(count, batch)
        self.store.merge()


def disk(store: AttributionStore) -> int:
    files = [store.path, *store.folder.rglob("*"), *store.journal_dir.rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file())


def commit_against_sizes(folder: Path, sizes_gb: list[float], repeats: int) -> None:
    """Build one store per size, then time 8-map runs on them in turn (so that machine noise hits all)."""
    map_bytes = np.prod(LARGE) * 4
    writers = []
    for gb in sizes_gb:
        writer = Writer(AttributionStore(folder / f"grow{gb}.h5"), LARGE)
        while disk(writer.store) < gb * 1e9:
            writer.run(min(512, int((gb * 1e9 - disk(writer.store)) / map_bytes) + 1))
        writers.append(writer)
    os.sync()  # the builds' writeback must not be charged to the commits measured next
    time.sleep(2)
    runs: dict[int, list[float]] = {i: [] for i in range(len(writers))}
    commits: dict[int, list[float]] = {i: [] for i in range(len(writers))}
    for _ in range(repeats):
        for i, writer in enumerate(writers):
            start = time.perf_counter()
            writer.journal(8)
            middle = time.perf_counter()
            writer.store.merge()
            runs[i].append(time.perf_counter() - start)
            commits[i].append(time.perf_counter() - middle)
    print("\n| store | 8-map run (journal + commit) | commit alone | disk peak above the store | its maps |")
    print("|---|---|---|---|---|")
    for i, writer in enumerate(writers):
        before = disk(writer.store)
        writer.journal(8)
        peak = peak_during_commit(writer.store) - before
        run, commit = statistics.median(runs[i]) * 1e3, statistics.median(commits[i]) * 1e3
        print(
            f"| {before / 1e9:.2f} GB | {run:.0f} ms | {commit:.0f} ms | {peak / 1e6:.1f} MB "
            f"| {8 * map_bytes / 1e6:.1f} MB |"
        )
        _remove(writer.store)


def peak_during_commit(store: AttributionStore) -> int:
    """Bytes on disk just before each rename of a commit, when the journal, the new segment and the store
    are all there (the peak), at most."""
    sizes: list[int] = []
    real_replace = os.replace

    def measured_replace(*args: object) -> None:
        sizes.append(disk(store))
        real_replace(*args)

    with mock.patch("attribench_core.store.os.replace", measured_replace):
        store.merge()
    return max(sizes)


def build_run_by_run(folder: Path, sizes_gb: list[float]) -> None:
    print("\n| built run by run (8-map runs) | runs | seconds |\n|---|---|---|")
    for gb in sizes_gb:
        store = AttributionStore(folder / f"build{gb}.h5")
        writer = Writer(store, LARGE)
        runs = 0
        start = time.perf_counter()
        while disk(store) < gb * 1e9:
            writer.run(8)
            runs += 1
        print(f"| {disk(store) / 1e9:.2f} GB | {runs} | {time.perf_counter() - start:.1f} |")
        _remove(store)


def read_back(folder: Path, counts: list[int], repeats: int) -> None:
    print("\n| maps in the group | segments | read back, µs per map |\n|---|---|---|")
    for count in counts:
        store = AttributionStore(folder / f"read{count}.h5")
        writer = Writer(store, SMALL)
        for _ in range(0, count, 1024):
            writer.run(min(1024, count - writer.n), batch=256)
        index = np.arange(count)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with store.reader(KEY) as reader:
                for first in range(0, count, 32):
                    reader.read(index[first : first + 32])
            times.append(time.perf_counter() - start)
        with store.reader(KEY) as reader:
            segments = len(reader.segments)
        print(f"| {count:,} | {segments} | {statistics.median(times) / count * 1e6:.1f} |")
        _remove(store)


def _remove(store: AttributionStore) -> None:
    import shutil

    shutil.rmtree(store.folder, ignore_errors=True)
    shutil.rmtree(store.journal_dir, ignore_errors=True)
    store.path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-gb", type=float, nargs="*", default=[0.1, 1, 4])
    parser.add_argument("--build-gb", type=float, nargs="*", default=[1, 2])
    parser.add_argument("--read-maps", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where the stores are built (default: a temp folder)")
    args = parser.parse_args()
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        if args.sizes_gb:
            commit_against_sizes(Path(tmp), args.sizes_gb, args.repeats)
        if args.build_gb:
            build_run_by_run(Path(tmp), args.build_gb)
        if args.read_maps:
            read_back(Path(tmp), args.read_maps, args.repeats)


if __name__ == "__main__":
    main()
