"""Which compression for the attribution store: none / lzf / gzip, each with and without HDF5's shuffle
filter, on real gradient maps (input gradients of a random-init ResNet-18 on 224² images).

Writes the maps as the store does (chunks of several maps, Fletcher32) and reports the size against raw,
the write and the read throughput. Run: python bench/store_compression.py [--n 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from timing import machine

from attribench_core.reference_models import resnet18
from attribench_core.store import CHUNK_BYTES


def gradient_maps(n: int, size: int = 224, batch: int = 8) -> np.ndarray:
    """Input gradients of the top logit of a random-init ResNet-18 on smooth random images."""
    torch.manual_seed(0)
    model = resnet18().eval()
    maps = []
    for start in range(0, n, batch):
        noise = torch.randn(min(batch, n - start), 3, size // 8, size // 8)
        images = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear").requires_grad_()
        logits = model(images)
        logits.max(dim=1).values.sum().backward()
        maps.append(images.grad.numpy().astype(np.float32))
    return np.concatenate(maps)


def measure(
    folder: Path, maps: np.ndarray, compression: str | None, shuffle: bool
) -> tuple[float, float, float]:
    path = folder / "maps.h5"
    rows = max(1, CHUNK_BYTES // maps[0].nbytes)
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "attribution", data=maps, chunks=(rows, *maps.shape[1:]), compression=compression,
            shuffle=shuffle, fletcher32=True,
        )  # fmt: skip
    written = time.perf_counter() - start
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        for first in range(0, len(maps), 32):
            f["attribution"][first : first + 32]
    read = time.perf_counter() - start
    return path.stat().st_size / maps.nbytes, maps.nbytes / 1e6 / written, maps.nbytes / 1e6 / read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=48)
    args = parser.parse_args()
    start = time.perf_counter()
    maps = gradient_maps(args.n)
    print(f"machine: {machine()}; {args.n} gradient maps 3x224x224 of a random-init ResNet-18 "
          f"({maps.nbytes / 1e6:.0f} MB raw, computed in {time.perf_counter() - start:.1f} s)")  # fmt: skip
    half = maps.astype(np.float16).astype(np.float32)
    scale = np.abs(maps).max(axis=(1, 2, 3), keepdims=True)
    print(f"float16: max error {np.abs(half - maps).max() / scale.min():.2e} of a map's max |value|, "
          f"{(half == 0)[maps != 0].mean() * 100:.2f} % of non-zero values flushed to 0")  # fmt: skip
    print("| compression | shuffle | size / raw | write MB/s | read MB/s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for compression in (None, "lzf", "gzip"):
            for shuffle in (False, True):
                ratio, write, read = min(
                    (measure(Path(tmp), maps, compression, shuffle) for _ in range(3)), key=lambda r: -r[1]
                )
                name = compression or "none"
                print(f"| {name} | {'yes' if shuffle else 'no'} | {ratio:.3f} | {write:.0f} | {read:.0f} |")


if __name__ == "__main__":
    main()
