"""Overhead of the run loop over bare Captum calls, for Integrated Gradients on the toy model.

Bare: `captum.attr.IntegratedGradients(model).attribute(batch, target=..., n_steps=64,
internal_batch_size=64)` over the same batches, targets precomputed. attribench: `runner.execute` for
`methods.ig` (prediction forward pass, explainer call with model-state guard, journal write, merge into a
fresh HDF5 store). Both interleaved in one process. Run: python bench/run_overhead.py [--n 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from timing import interleaved, machine

from attribench_core import plugins
from attribench_core.runner import RunRequest, execute, plan, prepare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--explainer", default="ig")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.h5"
        request = RunRequest(
            "core.relevance_mass",
            explainers=[args.explainer],
            num_imgs=args.n,
            batch_size=args.batch_size,
            store=store,
        )
        ctx = prepare(plugins.get_registry(), request)
        module = ctx.resources.model(ctx.model_name).module
        images = ctx.dataset.batch(ctx.index).images
        with torch.no_grad():
            targets = module(images).argmax(1)
        ig = IntegratedGradients(module)

        def bare() -> None:
            for start in range(0, len(images), args.batch_size):
                part = slice(start, start + args.batch_size)
                ig.attribute(images[part], target=targets[part], n_steps=64, internal_batch_size=64)

        def ours() -> None:
            for path in Path(tmp).iterdir():
                path.unlink() if path.is_file() else None
            execute(ctx, plan(ctx))

        times = interleaved({"bare Captum": bare, "attribench execute": ours}, repeats=5)
    overhead = times["attribench execute"] / times["bare Captum"] - 1
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")
    print(f"{args.n} images of core.toy, batches of {args.batch_size}, IG 64 steps, internal batch 64")
    for name, seconds in times.items():
        print(f"{name:20s} {seconds:7.3f} s   {seconds / args.n * 1000:6.2f} ms/image")
    print(f"overhead: {overhead * 100:+.1f} %")


if __name__ == "__main__":
    main()
