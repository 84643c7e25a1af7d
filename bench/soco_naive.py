"""SoCo's `soundness` + `completeness` on the SMERF Simple-FR model: the plugin's batched metrics against the
same algorithm written naively per image, side by side in one process, on the same images, maps and model.

- Ours: `Soundness.compute` and `Completeness.compute` of `attribench_soco.metrics`, called in-process on a
  run context whose store already holds the attributions (so both sides pay the same for reading the
  maps, and neither pays the CLI's start-up, data and model loading: on a subset of 16 images those fixed
  costs would dominate our side while the naive loop has none). Timed on the naive loop's images (one
  batch) and on `--ours-images` images in batches of `--batch-size` (the metric's usual workload).
- Naive: for each image, for each removal step: build the mask from the image's map, impute the removed
  pixels with a per-image SciPy port of ROAD's imputation (`soco_imputation.scipy_lil`: `lil_matrix` +
  `spsolve`), run a single-image forward pass; then the same dataset-level scoring in plain NumPy.
  Soundness: 96 LeRF steps (98 % → 3 % removed); completeness: the image itself plus 9 thresholds.

The imputation noise is off on both sides (`noise=0`), and ties in a map are broken by the same random
keys (the metric's per-batch draw), so both sides remove the same pixels at every step and must give the
same curves up to the imputation's float32 tolerance (≤ 1e-3 per pixel), which can flip a decision that
sits on the boundary: the script counts the (image, step) decisions that differ.

Run: pip install -r bench/requirements.txt; python bench/soco_naive.py [--images 16] [--ours-images 64]
[--explainer ig] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch
from attribench_soco.functional import (
    COMPLETENESS_THRESHOLDS,
    EPSILON,
    SOUNDNESS_RATIOS,
    START,
    removed_count,
)
from attribench_soco.maps import saliency
from attribench_soco.metrics import Completeness, Evaluated, Soundness
from soco_imputation import scipy_lil
from timing import machine

from attribench_core import plugins
from attribench_core.result import Result
from attribench_core.runner import RunContext, RunRequest, execute, plan, prepare

METRICS = ("Soundness", "Completeness")


def context(images: int, args: argparse.Namespace, folder: Path) -> RunContext:
    """A run context on SoCo's default pair (SMERF Simple-FR) whose store holds the attributions."""
    request = RunRequest(
        "soco.soundness",
        explainers=[args.explainer],
        num_imgs=images,
        batch_size=args.batch_size,
        store=folder / f"soco_naive_{images}.h5",
        options={"noise": 0.0},
    )
    ctx = prepare(plugins.get_registry(), request)
    execute(ctx, plan(ctx), keep_going=False)
    return ctx


def ours(ctx: RunContext, seconds: dict[str, float]) -> Callable[[], dict[str, tuple[Result, Evaluated]]]:
    """Both batched metrics as `compute` runs them (evaluate, then score), keeping the per-image outcomes;
    each one's time goes to `seconds`."""
    label = next(iter(ctx.explainers))

    def run() -> dict[str, tuple[Result, Evaluated]]:
        found = {}
        for metric in (Soundness(noise=0.0), Completeness(noise=0.0)):
            start = time.perf_counter()
            evaluated = metric.evaluate(ctx, label)
            found[type(metric).__name__] = metric.score(ctx, label, evaluated), evaluated
            seconds[type(metric).__name__] = time.perf_counter() - start
        return found

    return run


@torch.no_grad()
def judge(model: torch.nn.Module, image: np.ndarray, label: int) -> tuple[bool, float]:
    """One image `[C,H,W]` through the model: (correct, the label's logit)."""
    logits = model(torch.from_numpy(image).float()[None])[0]
    return bool(logits.argmax() == label), float(logits[label])


def filled(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The image with the `removed` pixels `[H,W]` imputed (noise off); itself when none is removed."""
    return scipy_lil(image, removed) if removed.any() else image


def naive(ctx: RunContext, seconds: dict[str, float]) -> Callable[[], dict[str, dict]]:
    """Soundness and completeness one image at a time, then the dataset-level scoring; each one's time
    (reading the maps counted in soundness's) goes to `seconds`."""
    label = next(iter(ctx.explainers))
    model = ctx.load_model(ctx.model_name)

    def run() -> dict[str, dict]:
        sound_correct, kept_sums, complete_correct = [], [], []
        seconds.update(Soundness=0.0, Completeness=0.0)
        start = time.perf_counter()
        for batch, stored in ctx.attribution_batches(label):
            keep = ~np.asarray(stored.nonfinite, dtype=bool)
            maps = saliency(torch.from_numpy(stored.attribution[keep])).numpy()
            images = batch.images[torch.from_numpy(keep)].double().numpy()
            labels = batch.labels[torch.from_numpy(keep)].tolist()
            # the metric breaks ties between equal attributions by uniform keys drawn per batch
            generator = Soundness().generator(ctx, "Soundness", int(stored.index[0]))
            keys = torch.rand((len(maps), maps[0].size), generator=generator).numpy()
            for image, sal, target, key in zip(images, maps, labels, keys, strict=True):
                flat = sal.reshape(-1)
                order = np.lexsort((key, flat))  # ascending attribution, ties by key
                correct, kept = [], []
                for ratio in SOUNDNESS_RATIOS:
                    removed = np.zeros(flat.size, dtype=bool)
                    removed[order[: removed_count(flat.size, ratio)]] = True
                    correct.append(judge(model, filled(image, removed.reshape(sal.shape)), target)[0])
                    kept.append(flat[~removed].astype(np.float64).sum())
                sound_correct.append(correct)
                kept_sums.append(kept)
                seconds["Soundness"] += time.perf_counter() - start
                start = time.perf_counter()
                complete_correct.append(
                    [judge(model, image, target)[0]]
                    + [
                        judge(model, filled(image, sal > threshold * sal.max()), target)[0]
                        for threshold in COMPLETENESS_THRESHOLDS
                    ]
                )
                seconds["Completeness"] += time.perf_counter() - start
                start = time.perf_counter()
        scores = {"Soundness": soundness_score(np.array(sound_correct, dtype=float).T, np.array(kept_sums).T)}
        seconds["Soundness"] += time.perf_counter() - start
        start = time.perf_counter()
        scores["Completeness"] = completeness_score(np.array(complete_correct, dtype=float).T)
        seconds["Completeness"] += time.perf_counter() - start
        return scores

    return run


def soundness_score(correct: np.ndarray, kept: np.ndarray) -> dict:
    """Algorithm 3 from the outcomes `[T, N]` and the kept attribution `[T, N]`."""
    accuracy = correct.mean(axis=1)
    added = kept - np.vstack([np.zeros((1, kept.shape[1])), kept[:-1]])
    false = np.zeros(kept.shape[1])
    previous, ratios = 0.0, []
    for step in range(len(kept)):
        if accuracy[step] - previous < EPSILON and accuracy[step] > START:
            false += added[step]
        previous = accuracy[step]
        with np.errstate(all="ignore"):
            ratios.append(np.where(kept[step] > 0, (kept[step] - false) / kept[step], np.nan))
    ratios = np.array(ratios)
    with np.errstate(all="ignore"):
        per_image = np.nanmean(ratios, axis=0)
    valid = np.isfinite(per_image)
    return {
        "value": float(per_image[valid].mean()),
        "curve": np.nanmean(ratios[:, valid], axis=1),
        "accuracy": accuracy,
        "correct": correct,
    }


def completeness_score(correct: np.ndarray) -> dict:
    """Algorithm 4 from the outcomes `[1 + thresholds, N]` (first row: the image itself)."""
    drop = correct[:1] - correct[1:]
    return {
        "value": float(drop.mean()),
        "curve": drop.mean(axis=1),
        "accuracy": correct[0],
        "correct": correct,
    }


def differences(mine: dict[str, tuple[Result, Evaluated]], theirs: dict[str, dict]) -> list[str]:
    """What differs between the two: decisions, curves, values."""
    lines = []
    for name, curve in (("Soundness", "soundness"), ("Completeness", "completeness")):
        result, evaluated = mine[name]
        other = theirs[name]
        flips = int((evaluated.outcomes.correct != other["correct"].astype(bool)).sum())
        gap = np.nanmax(np.abs(np.array(result.curves[curve].y) - other["curve"]))
        lines.append(
            f"{name.lower()}: value ours {result.value:.4f}, naive {other['value']:.4f}; max |Δ| of the"
            f" {curve} curve {gap:.1e}; (image, step) decisions that differ: {flips} of"
            f" {evaluated.outcomes.correct.size}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=16, help="images of the naive loop (and of ours beside it)"
    )
    parser.add_argument("--ours-images", type=int, default=64, help="images of our second, larger timing")
    parser.add_argument("--explainer", default="ig")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        small = context(args.images, args, Path(tmp))
        large = context(args.ours_images, args, Path(tmp))
        counts = {"naive": len(small.index), "ours": len(small.index), "ours, more images": len(large.index)}
        seconds: dict[str, dict[str, float]] = {name: {} for name in counts}
        candidates = {
            "naive": naive(small, seconds["naive"]),
            "ours": ours(small, seconds["ours"]),
            "ours, more images": ours(large, seconds["ours, more images"]),
        }
        times = {(name, metric): [] for name in candidates for metric in METRICS}
        outputs: dict[str, object] = {}
        for _ in range(args.repeats):
            for name, run in candidates.items():
                outputs[name] = run()
                for metric in METRICS:
                    times[name, metric].append(seconds[name][metric])
    per_image = {key: float(np.median(values)) / counts[key[0]] for key, values in times.items()}
    print(
        f"machine: {machine()}; torch {torch.__version__} ({args.threads} threads), SciPy {scipy.__version__}"
    )
    print(
        f"load average at the start {os.getloadavg()[0]:.1f}; SMERF Simple-FR, {args.explainer} maps, noise"
        f" off; median of {args.repeats} interleaved repeats; soundness + completeness together\n"
    )
    print("| metric | candidate | images | ms/image | naive / this |\n|---|---|---:|---:|---:|")
    for metric in METRICS:
        for name in counts:
            value = per_image[name, metric]
            ratio = per_image["naive", metric] / value
            print(f"| {metric.lower()} | {name} | {counts[name]} | {value * 1e3:.1f} | {ratio:.1f}× |")
    print()
    for line in differences(outputs["ours"], outputs["naive"]):
        print(f"- {line}")


if __name__ == "__main__":
    main()
