"""ROAD MoRF curve: attribench's SoCo plugin (`ascending_order` / `removed_by_area` / `sweeps.sweep`, batched
multigrid `impute`) against Quantus `ROAD` on the same model, images, maps and percentages, side by side.

Model: the SMERF Simple-FR CNN (3×64×64 input; trained or taken from `ATTRIBENCH_HOME`); images: its test
split (seeded sample). Its images are grey (R = G = B exactly), which makes the comparison possible on the
Quantus version that is installed: Quantus 0.6.0 `ROAD` fails on 3-channel input (reproduced below, the
error printed), so both sides get the single-channel view `x[:, :1]` and a wrapper that repeats it to 3
channels before the model. The model's outputs are identical; the imputed channel equals each of the three
imputed identical channels (one linear system per image, shared by its channels).

Maps: the label logit's input gradient (Saliency) reduced by `maps.saliency` (|a| averaged over channels,
min-max), plus a fixed field 1e-7·U[0,1) per image so that the order has no ties (Quantus sorts with
`np.argsort`, ours breaks ties at random). Percentages 10, 20, …, 90 (ours' `AREA_RATIOS`); the removal
sets are checked equal.
Values are compared with the imputation noise off on both sides, times with the default noise 0.01.
Quantus is called with `batch_size` = all images: its `custom_postprocess` averages only the first batch
(shown below on 8 images).

`--channels 3` compares on the RGB images with the RGB model instead (for a Quantus that runs on them,
e.g. 0.5.3 in its own venv). `--side 224` upsamples the images to 224×224 (nearest) and puts an
area-downsampling to 64×64 in front of the model (same classifier; the maps are computed through it).

Run: OMP_NUM_THREADS=1 python bench/road_quantus.py [--images 500] [--side 64] [--channels 1] [--repeats 3]
[--threads 1] (needs `pip install -r bench/requirements.txt`).
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
import warnings

import numpy as np
import quantus
import torch
import torch.nn.functional as F
from attribench_soco import functional
from attribench_soco.maps import saliency
from attribench_soco.sweeps import Outcomes, sweep
from timing import interleaved, machine

from attribench_core.plugins import get_registry
from attribench_core.progress import no_progress
from attribench_core.runner import Resources, RunRequest, sample_index

PERCENTAGES = [round(100 * r) for r in functional.AREA_RATIOS]


class Grey(torch.nn.Module):
    """Single-channel `[N,1,S,S]` input → repeated to 3 channels, area-resized to 64×64 → the model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != 64:
            x = F.adaptive_avg_pool2d(x, 64)
        return self.model(x)


def load(count: int, side: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(the SMERF Simple-FR model, `count` test images `[N,3,side,side]`, labels)."""
    resources = Resources(get_registry(), RunRequest(metric="soco.road_morf"), no_progress, {})
    model = resources.model("smerf.simple_fr").module.eval()
    dataset = resources.dataset("smerf.simple_fr")
    batch = dataset.batch(sample_index(len(dataset), count, 0))
    images = batch.images
    assert (images[:, 0] == images[:, 1]).all() and (images[:, 0] == images[:, 2]).all(), "not grey"
    if side != images.shape[-1]:
        images = F.interpolate(images, size=side, mode="nearest")
    return model, images, batch.labels


def gradient_maps(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`[N,S,S]` float64 maps in [0,1]: `saliency` of the label logit's input gradient, plus a fixed
    tie-breaking field."""
    x = images.clone().requires_grad_(True)
    model(x).gather(1, labels[:, None]).sum().backward()
    maps = saliency(x.grad).double()
    return maps + 1e-7 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(1), dtype=maps.dtype)


def ours(model, images, labels, maps, noise: float, batch: int) -> Outcomes:
    """The plugin's MoRF sweep, batch by batch, as `RoadMorf` runs it."""
    parts = []
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(images), batch):
        part = slice(start, start + batch)
        order = functional.ascending_order(maps[part], generator)
        rank = functional.ranks(order)
        shape = maps[part].shape
        removals = (functional.removed_by_area(rank, r / 100, "morf").view(shape) for r in PERCENTAGES)
        parts.append(sweep(model, images[part], labels[part], removals, noise=noise, generator=generator))
    return Outcomes.concatenate(parts)


def theirs(model, images: np.ndarray, labels: np.ndarray, maps: np.ndarray, noise: float, batch: int):
    """Quantus ROAD: {percentage: accuracy}."""
    metric = quantus.ROAD(percentages=PERCENTAGES, noise=noise, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=model, x_batch=images, y_batch=labels, a_batch=maps, device="cpu", batch_size=batch
        )


def same_removals(maps: torch.Tensor) -> bool:
    """Whether Quantus's top-k sets (argsort of −a, `int(H·W·p/100)`) equal ours for every image and p."""
    flat = maps.flatten(1)
    rank = functional.ranks(functional.ascending_order(maps))
    theirs_order = np.argsort(-flat.numpy(), axis=1)
    size = flat.shape[1]
    for p in PERCENTAGES:
        count = int(size * p / 100)
        if count != functional.removed_count(size, p / 100):
            return False
        mine = functional.removed_by_area(rank, p / 100, "morf").numpy()
        reference = np.zeros_like(mine)
        np.put_along_axis(reference, theirs_order[:, :count], True, axis=1)
        if not (mine == reference).all():
            return False
    return True


def imputation_difference(grey: torch.Tensor, maps: torch.Tensor, count: int) -> float:
    """Max |Quantus `noisy_linear_imputation` − ours `impute`| (noise off) over the first `count` images and
    every percentage, on the same removed pixels."""
    from attribench_soco.imputation import impute
    from quantus.functions.perturb_func import noisy_linear_imputation

    grey, maps = grey[:count], maps[:count]
    order = np.argsort(-maps.flatten(1).numpy(), axis=1)
    worst = 0.0
    for p in PERCENTAGES:
        top = order[:, : int(order.shape[1] * p / 100)]
        reference = np.stack(
            [
                noisy_linear_imputation(x.double().numpy(), t, noise=0.0)
                for x, t in zip(grey, top, strict=True)
            ]
        )
        removed = np.zeros(order.shape, dtype=bool)
        np.put_along_axis(removed, top, True, axis=1)
        mine = impute(grey, torch.from_numpy(removed).view(maps.shape), noise=0.0)
        worst = max(worst, float(np.abs(mine.double().numpy() - reference).max()))
    return worst


def rgb_failure(model, images, labels, maps) -> str:
    """Quantus ROAD on the 3-channel images: the exception it raises (or its output)."""
    try:
        out = theirs(model, images[:4].numpy(), labels[:4].numpy(), maps[:4, None].numpy(), 0.01, 4)
        return f"no error: {out}"
    except Exception as error:  # record whatever it raises
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return f"{type(error).__name__}: {error} (at {os.path.basename(frame.filename)}:{frame.lineno})"


def first_batch_only(model, grey, labels, maps) -> str:
    """Quantus ROAD on 8 images in batches of 4 (noise off): 4 blank images first, then the 4 images whose
    curves (ours, noise off) are lowest."""
    blank = torch.nonzero(grey.flatten(1).std(1) == 0)[:, 0][:4]
    curves = ours(model, grey, labels, maps, 0.0, 100).correct.mean(axis=0)
    rest = torch.from_numpy(np.argsort(curves, kind="stable")[:4])
    pick = torch.cat([blank, rest])
    out = theirs(model, grey[pick].numpy(), labels[pick].numpy(), maps[pick, None].numpy(), 0.0, 4)
    mine = ours(model, grey[pick], labels[pick], maps[pick], 0.0, 8).correct.mean(axis=1)
    return (
        f"Quantus (batch_size 4) {[round(float(v), 3) for v in out.values()]}; ours, all 8"
        f" {[round(float(v), 3) for v in mine]}; ours, first 4"
        f" {ours(model, grey[blank], labels[blank], maps[blank], 0.0, 4).correct.mean(axis=1).tolist()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100, help="ours: images per sweep batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--channels", type=int, default=1, choices=(1, 3), help="3: the RGB images (Quantus < 0.6 only)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, pool, pool_labels = load(max(args.images, 200), args.side)
    grey_model = Grey(model).eval()
    pool_maps = gradient_maps(grey_model, pool[:, :1], pool_labels)
    images, labels, maps = pool[: args.images], pool_labels[: args.images], pool_maps[: args.images]
    grey = images[:, :1].contiguous()
    print(
        f"machine: {machine()}; torch {torch.__version__} ({args.threads} threads), Quantus"
        f" {quantus.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')};"
        f" load average at the start {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{args.images} SMERF Simple-FR test images at {args.channels}×{args.side}×{args.side}, percentages"
        f" {PERCENTAGES};"
        f" ours in batches of {args.batch}, Quantus in one batch\n"
    )
    rgb_model = model if args.side == 64 else torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(64), model)
    print(f"- Quantus ROAD on the 3-channel images: {rgb_failure(rgb_model, images, labels, maps)}")
    demo = first_batch_only(grey_model, pool[:, :1].contiguous(), pool_labels, pool_maps)
    print(f"- Quantus ROAD, first batch only: {demo}")
    print(f"- removal sets equal to Quantus's for every image and percentage: {same_removals(maps)}")
    print(
        "- max |imputed image difference| (noise off, first 50 images, every percentage):"
        f" {imputation_difference(grey, maps, 50):.1e}"
    )

    if args.channels == 3:
        grey_model, grey = rgb_model, images.contiguous()  # the comparison below on the RGB images
    x, y, a = grey.numpy(), labels.numpy(), maps[:, None].numpy()
    start = time.perf_counter()
    reference = np.array(list(theirs(grey_model, x, y, a, 0.0, len(x)).values()))
    quantus_seconds = time.perf_counter() - start
    start = time.perf_counter()
    clean = ours(grey_model, grey, labels, maps, 0.0, args.batch).correct.mean(axis=1)
    ours_seconds = time.perf_counter() - start
    print(f"- noise off: Quantus {quantus_seconds:.1f} s, ours {ours_seconds:.1f} s")
    print(f"  Quantus curve {np.round(reference, 4).tolist()}")
    print(f"  ours curve    {np.round(clean, 4).tolist()}")

    noisy: dict[str, np.ndarray] = {}
    times = interleaved(
        {
            "quantus": lambda: noisy.__setitem__(
                "quantus", np.array(list(theirs(grey_model, x, y, a, 0.01, len(x)).values()))
            ),
            "ours": lambda: noisy.__setitem__(
                "ours", ours(grey_model, grey, labels, maps, 0.01, args.batch).correct.mean(axis=1)
            ),
        },
        repeats=args.repeats,
    )
    print(f"  noise 0.01, last repeat: Quantus {np.round(noisy['quantus'], 4).tolist()}")
    print(f"  noise 0.01, last repeat: ours    {np.round(noisy['ours'], 4).tolist()}\n")
    header = [
        "input",
        "images",
        "Quantus s",
        "ours s",
        "Quantus/ours",
        "max |Δ accuracy| noise off",
        "max |Δ accuracy| noise 0.01",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratio = times["quantus"] / times["ours"]
    print(
        f"| {args.channels}×{args.side}×{args.side} | {args.images}"
        f" | {times['quantus']:.1f} | {times['ours']:.2f}"
        f" | {ratio:.1f}× | {np.abs(reference - clean).max():.4f}"
        f" | {np.abs(noisy['quantus'] - noisy['ours']).max():.4f} |"
    )


if __name__ == "__main__":
    main()
