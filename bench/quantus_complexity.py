"""Complexity checks: attribench's `checks.sparseness` and `checks.complexity` against Quantus `Sparseness`
and `Complexity` on the same model, images and maps, values and times side by side.

Maps: computed once by attribench (`attribench run checks.sparseness` into a temporary store) for the
toy CNN on `core.toy` test images (3×32×32) and the explainers below; the metric then reads them back.
Quantus gets the same maps as ours measures them, |a| summed over channels per pixel (`[N,1,H,W]`; its
own flattening would mix channels in), with its defaults (abs and max-normalisation on: both change
neither score but for the ε below). Differences, tested here: Quantus adds ε = 1e-7 to every value before
the Gini index, after dividing the maps by their maximum over the whole batch (its `normalise_by_max`
defaults to every axis, the batch axis included: a sample's sparseness then depends on the other maps of
its batch), and 1e-12 inside the logarithm of the entropy; ours adds nothing (the papers' formulas). The
column "with Quantus's ε" adds the same on our side to show that this is the whole difference.

Times: ours = the metric's `compute` on the stored maps (store read, scores, bootstrap interval) per
explainer; Quantus = its call on the same maps as numpy arrays (`a_batch`, `batch_size` = all), median
of interleaved repeats.

Run: python bench/quantus_complexity.py [--images 500] [--side 64] [--repeats 3]
(in a venv with `pip install -r bench/requirements.txt` beside the attribench packages).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import quantus
import torch
from attribench_checks import functional
from timing import interleaved, machine

from attribench_core.plugins import get_registry
from attribench_core.runner import RunRequest, prepare, run

EXPLAINERS = ["methods.gradient", "methods.input_x_gradient", "methods.ig", "methods.edge", "methods.random"]
QUANTUS = {"checks.sparseness": quantus.Sparseness, "checks.complexity": quantus.Complexity}


def quantus_scores(metric: str, images: np.ndarray, magnitudes: np.ndarray) -> np.ndarray:
    """Quantus's per-sample values of `magnitudes[N,1,H,W]` (copied: Quantus changes its input)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = QUANTUS[metric](disable_warnings=True)(
            model=None,
            x_batch=images,
            y_batch=np.zeros(len(images), dtype=np.int64),
            a_batch=magnitudes.copy(),
            batch_size=len(images),
        )
    return np.asarray(out, dtype=np.float64)


def with_quantus_epsilon(metric: str, magnitudes: np.ndarray) -> np.ndarray:
    """Our formula with Quantus's ε: +1e-7 after dividing by the maximum over the whole batch (Gini),
    +1e-12 in the log (entropy)."""
    flat = magnitudes.reshape(len(magnitudes), -1)
    if metric == "checks.sparseness":
        return functional.gini(flat / flat.max() + 1e-7)
    shares = flat / flat.sum(axis=1, keepdims=True)
    return -(shares * np.log(shares + 1e-12)).sum(axis=1)


def batch_dependence() -> np.ndarray:
    """How much Quantus's Gini of each of five noise maps scaled 1, 10, …, 10⁴ moves when the map is scored
    in that batch instead of alone (its ε falls after a batch-wide max normalisation)."""
    rng = np.random.default_rng(0)
    maps = rng.random((5, 1, 32, 32)) ** 8 * np.logspace(0, 4, 5)[:, None, None, None]
    images = np.zeros((5, 3, 32, 32), np.float32)
    together = quantus_scores("checks.sparseness", images, maps)
    alone = [quantus_scores("checks.sparseness", images[i : i + 1], maps[i : i + 1])[0] for i in range(5)]
    return np.abs(together - np.array(alone))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    registry = get_registry()
    print(
        f"machine: {machine()}; torch {torch.__version__}, Quantus {quantus.__version__}, numpy"
        f" {np.__version__}; load average at the start {os.getloadavg()[0]:.1f}"
    )
    print(f"{args.images} core.toy test images, toy CNN, median of {args.repeats} interleaved repeats\n")
    print(f"Quantus Gini, batch of five maps scaled 1…1e4 vs each alone: |change| {batch_dependence()}\n")
    header = "metric | explainer | n | max abs diff | with Quantus's ε | Quantus ms | ours ms | Quantus/ours"
    print(f"| {header} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        request = RunRequest(
            "checks.sparseness", EXPLAINERS, num_imgs=args.images, store=Path(folder) / "s.h5", batch_size=100
        )
        run(registry, request)  # computes and stores the maps
        for metric in QUANTUS:
            ctx = prepare(registry, replace(request, metric=metric))
            images = ctx.dataset.batch(ctx.index).images.numpy()
            for label in ctx.explainers:
                maps = np.concatenate([s.attribution for s in ctx.stored_batches(label)])
                magnitudes = functional.pixel_magnitudes(maps).reshape(len(maps), 1, *maps.shape[2:])
                keep = magnitudes.reshape(len(maps), -1).any(axis=1)
                result = ctx.metric.compute(ctx, label)
                mine = result.per_sample[ctx.metric.score_name]
                theirs = quantus_scores(metric, images[keep], magnitudes[keep])
                epsilon = with_quantus_epsilon(metric, magnitudes[keep])
                times = interleaved(
                    {
                        "quantus": partial(quantus_scores, metric, images[keep], magnitudes[keep]),
                        "ours": partial(ctx.metric.compute, ctx, label),
                    },
                    args.repeats,
                )
                print(
                    f"| {metric} | {label} | {int(keep.sum())} | {np.abs(mine - theirs).max():.1e} |"
                    f" {np.abs(epsilon - theirs).max():.1e} | {1000 * times['quantus']:.1f} |"
                    f" {1000 * times['ours']:.1f} | {times['quantus'] / times['ours']:.1f}× |"
                )


if __name__ == "__main__":
    main()
