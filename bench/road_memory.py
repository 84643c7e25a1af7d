"""Peak memory of a ROAD run on a streamed image folder, against the number of images.

Writes a folder of N smooth random JPEG photos (320x256, two class folders) and a model file whose `build()`
returns the reference ResNet-18 (`attribench_core.reference_models`, `--width` channels in its first
stage, seeded random weights), then runs, in a fresh process for each N,

    attribench run soco.road --images DIR --model DIR/model.py:build --normalize imagenet -e random
        --num-imgs N --size 224 --store ...

under `/usr/bin/time -v` and prints its peak resident memory and wall time. Images are decoded per batch,
so the peak should not grow with N. Run: python bench/road_memory.py [--counts 250 1000] [--width 64]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from timing import machine

MODEL_FILE = """\
import torch

from attribench_core.reference_models import resnet18


def build(num_classes):
    torch.manual_seed(0)
    return resnet18(num_classes, width={width})
"""


def write_folder(root: Path, count: int) -> None:
    """`count` smooth random 320x256 JPEGs in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, (8, 10, 3)).astype(np.uint8)
        Image.fromarray(coarse).resize((320, 256), Image.Resampling.BILINEAR).save(folder / f"{i:05d}.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 first-stage channels (64: full)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {machine()}; ResNet-18 width {args.width}, 224x224, batch {args.batch_size}")
    print(f"{'images':>7s} {'peak RSS MB':>12s} {'wall s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = root / "images"
        write_folder(images, max(args.counts))
        (root / "model.py").write_text(MODEL_FILE.format(width=args.width))
        for count in args.counts:
            store = root / f"road{count}.h5"
            model = f"{root / 'model.py'}:build"
            command = [
                *("/usr/bin/time", "-v", str(Path(sys.executable).parent / "attribench"), "run", "soco.road"),
                *("--images", str(images), "--model", model, "--normalize", "imagenet"),
                *("-e", "random", "--num-imgs", str(count), "--size", "224"),
                *("--batch-size", str(args.batch_size), "--store", str(store), "--json"),
            ]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"run failed ({done.returncode}): {done.stderr.strip().splitlines()[-3:]}")
            peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
            print(f"{count:7d} {peak_kb / 1024:12.0f} {wall:8.1f}", flush=True)


if __name__ == "__main__":
    main()
