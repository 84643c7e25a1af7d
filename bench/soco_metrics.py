"""SoCo: wall time of `soco.soundness` and `soco.completeness` on N images of the SMERF Simple-FR model.

    python bench/soco_metrics.py                       # 1000 images, IG, CPU
    python bench/soco_metrics.py --device cuda --num-imgs 1000

Each metric is timed as the CLI a user runs, after a first run that fills the store with the attributions
and trains the model (so the figures are the metric alone: reading the stored maps, the 96 or 10 imputed
sweeps and the forward passes). Use a scratch `ATTRIBENCH_HOME` and `--store` for clean figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import torch


def run(metric: str, args: argparse.Namespace) -> tuple[float, dict]:
    command = ["attribench", "run", metric, "--on", "smerf", "--explainer", args.explainer]
    command += ["--num-imgs", str(args.num_imgs)]
    command += [
        "--device",
        args.device,
        "--store",
        args.store,
        "--batch-size",
        str(args.batch_size),
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-imgs", type=int, default=1000)
    parser.add_argument("--explainer", default="ig")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--store", default="bench_soco.h5")
    args = parser.parse_args()
    warm, _ = run(
        "soco.deletion_accuracy", args
    )  # attributions and model, so that the rows below time the metric
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}")
    print(f"attributions + model (first run): {warm:.1f} s\n")
    print("| metric | images | wall time | value |\n|---|---|---|---|")
    for metric in ("soco.soundness", "soco.completeness"):
        seconds, outcome = run(metric, args)
        result = outcome["results"][0]
        print(f"| {metric} | {result['n']} | {seconds:.1f} s | {result['value']:.3f} |")


if __name__ == "__main__":
    main()
