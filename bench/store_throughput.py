"""Write throughput of the attribution store for [N,3,64,64] float32 attributions, by compression.

Measures the whole write path of a run: journal each batch (npz, fsync, rename), then merge into the HDF5
file (copy, append, fsync, rename). Random data compresses badly and real attributions well, so both
are measured. Run: python bench/store_throughput.py [--n 2048]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from timing import interleaved, machine

from attribench_core.store import AttributionStore, GroupKey


def write_all(folder: Path, compression: str, data: np.ndarray, batch: int) -> None:
    path = folder / f"{compression}.h5"
    path.unlink(missing_ok=True)
    store = AttributionStore(path, compression=compression)
    key = GroupKey("d@0", "m@0", "e@0")
    index = np.arange(len(data))
    for start in range(0, len(data), batch):
        part = index[start : start + batch]
        store.write_batch(key, {"explainer": "e"}, part, data[part], part, part)
    store.merge()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((args.n, 3, 64, 64)).astype(np.float32)
    # attribution-like: smooth blob, mostly near zero, as gradients of a CNN are
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 60.0).astype(np.float32)
    smooth = (blob[None, None] * rng.standard_normal((args.n, 3, 1, 1)).astype(np.float32)).round(3)
    megabytes = noise.nbytes / 1e6
    print(f"machine: {machine()}; {args.n} x 3x64x64 float32 = {megabytes:.0f} MB, batches of {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, data in (("random values", noise), ("attribution-like", smooth)):
            times = interleaved(
                {
                    c: (lambda c=c, data=data: write_all(folder, c, data, args.batch))
                    for c in ("none", "lzf", "gzip")
                },
                repeats=3,
            )
            for compression, seconds in times.items():
                write_all(folder, compression, data, args.batch)
                size = (folder / f"{compression}.h5").stat().st_size / 1e6
                print(f"{label:17s} {compression:5s} {megabytes / seconds:7.0f} MB/s  file {size:6.1f} MB")


if __name__ == "__main__":
    main()
