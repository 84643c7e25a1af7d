"""ROAD's noisy linear imputation: attribench's batched multigrid path (`attribench_soco.imputation.impute`)
against per-image SciPy ports of the original algorithm, side by side in one run.

- "SciPy lil": the original algorithm as ROAD's code runs it, per image: the system assembled in a
  `lil_matrix` one neighbour offset at a time, then `spsolve(csc_matrix(A), b)`, one factorisation with the
  3 channels as right-hand sides, plus the noise.
- "SciPy COO": the same solve with the matrix assembled as COO arrays (near-free assembly), for fairness.

Workloads, at each size: single masks (ROAD / completeness) removing 10/50/90/98 % of the pixels, as the
lowest (LeRF) or highest (MoRF) values of an attribution-shaped map (smooth blobs plus noise) or at random;
and the soundness sweep, 96 LeRF steps from 98 % removed down to 3 %, ours warm-started from the previous
step's (noisy) images as the metric runs it, SciPy solving each step afresh (timed on every
`--sweep-stride`-th step). Ours is timed with the noise on; the values are compared with the noise off (the
SciPy solution before its noise is added). Images: smooth random textures with edges, normalised as SoCo
does ((x − 0.485)/0.229). Speed-up = SciPy time / our time, per image.

With `--against-resnet`: instead, one step of the soundness sweep (warm-started from the previous step's
noisy images, as the metric runs it) and one single 50 % mask (cold, as ROAD runs it) per image at 224² and
batch 16/32/64, beside one forward pass of attribench's ResNet-18 per image at the same batch, all
interleaved; SciPy is not needed for it.

Run: pip install -r bench/requirements.txt; python bench/soco_imputation.py [--device cpu|cuda]
[--batch 8] [--images 8] [--scipy-images 4] [--sizes 64 224] [--threads 2]
or: python bench/soco_imputation.py --against-resnet [--batches 16 32 64] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from attribench_soco.imputation import impute
from timing import interleaved, machine

from attribench_core.reference_models import resnet18

# ROAD's neighbour offsets and weights
NEIGHBOURS = [
    ((dy, dx), 1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
]
NOISE = 0.01
FRACTIONS = (0.1, 0.5, 0.9, 0.98)
SWEEP = [round(0.98 - 0.01 * k, 2) for k in range(96)]


def scipy_lil(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's algorithm as its code runs it: `[C,H,W]` float64 image, `[H,W]` removed mask; the noise-free
    imputed image."""
    from scipy.sparse import csc_matrix, lil_matrix  # here: the ResNet comparison runs without SciPy
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    kept = (~removed).reshape(-1)
    flat = image.reshape(c, -1)
    unknown = np.flatnonzero(~kept)
    variable = np.zeros(h * w, dtype=int)
    variable[unknown] = np.arange(len(unknown))
    a = lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), c))
    total = np.ones(len(unknown))
    for (dy, dx), weight in NEIGHBOURS:
        row, col = unknown // w + dy, unknown % w + dx
        inside = (row >= 0) & (col >= 0) & (row < h) & (col < w)
        ids, neighbour = np.flatnonzero(inside), (unknown + dy * w + dx)[inside]
        known = kept[neighbour]
        b[ids[known], :] -= weight * flat[:, neighbour[known]].T
        a[ids[~known], variable[neighbour[~known]]] = weight
        total[~inside] -= weight
    a[np.arange(len(unknown)), np.arange(len(unknown))] = -total
    out = flat.copy()
    out[:, unknown] = spsolve(csc_matrix(a), b).reshape(len(unknown), c).T
    return out.reshape(c, h, w)


def scipy_coo(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The same system assembled as COO arrays, then the same `spsolve`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    kept = (~removed).reshape(-1)
    flat = image.reshape(c, -1)
    unknown = np.flatnonzero(~kept)
    n = len(unknown)
    variable = np.zeros(h * w, dtype=int)
    variable[unknown] = np.arange(n)
    rows, cols, values = [np.arange(n)], [np.arange(n)], []
    b = np.zeros((n, c))
    total = np.zeros(n)
    for (dy, dx), weight in NEIGHBOURS:
        row, col = unknown // w + dy, unknown % w + dx
        inside = (row >= 0) & (col >= 0) & (row < h) & (col < w)
        ids, neighbour = np.flatnonzero(inside), (unknown + dy * w + dx)[inside]
        known = kept[neighbour]
        b[ids[known]] -= weight * flat[:, neighbour[known]].T
        rows.append(ids[~known])
        cols.append(variable[neighbour[~known]])
        values.append(np.full(int((~known).sum()), weight))
        total[ids] += weight
    a = coo_matrix(
        (np.concatenate([-total, *values]), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out = flat.copy()
    out[:, unknown] = spsolve(a.tocsc(), b).reshape(n, c).T
    return out.reshape(c, h, w)


def with_noise(solve: Callable[[np.ndarray, np.ndarray], np.ndarray], rng: np.random.Generator):
    """A per-image SciPy run as the original does it (solve, then noise on the removed pixels); keeps the
    noise-free solutions of the last run for the comparison."""
    last: list[np.ndarray] = []

    def run(images: np.ndarray, masks: np.ndarray) -> None:
        last.clear()
        for image, removed in zip(images, masks, strict=True):
            clean = solve(image, removed)
            noisy = clean.copy()
            noisy[:, removed] += NOISE * rng.standard_normal((image.shape[0], int(removed.sum())))
            last.append(clean)

    return run, last


def make_images(n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random textures with a few sharp-edged rectangles, normalised as SoCo does."""
    images = F.avg_pool2d(torch.rand(n, 3, side + 6, side + 6, generator=generator), 7, 1)
    images = (images - images.amin()) / (images.amax() - images.amin())
    for i in range(n):
        for _ in range(3):
            y, x = (torch.rand(2, generator=generator) * side * 0.8).int().tolist()
            size = int(side * (0.1 + 0.2 * torch.rand(1, generator=generator)))
            images[i, :, y : y + size, x : x + size] = torch.rand(3, 1, 1, generator=generator)
    return (images - 0.485) / 0.229


def attribution_maps(n: int, side: int, generator: torch.Generator, blobs: int = 4) -> torch.Tensor:
    """Attribution-shaped maps: `blobs` smooth blobs plus a little noise."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    maps = 0.05 * torch.rand(n, side, side, generator=generator)
    for _ in range(blobs):
        centre = torch.rand(n, 2, 1, 1, generator=generator) * side
        width = (0.05 + 0.2 * torch.rand(n, 1, 1, generator=generator)) * side
        height = torch.rand(n, 1, 1, generator=generator)
        maps += height * torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / (2 * width**2))
    return maps


def removal(order: torch.Tensor, fraction: float, side: int) -> torch.Tensor:
    """Masks `[N,side,side]` removing the first `fraction` of each image's pixels in `order` `[N,side²]`."""
    masks = torch.zeros(order.shape, dtype=torch.bool)
    masks.scatter_(1, order[:, : int(fraction * side * side)], True)
    return masks.view(-1, side, side)


class Ours:
    """`impute` over all images in batches on the device, with the noise on (timed) or off (values)."""

    def __init__(self, images: torch.Tensor, batch: int, device: torch.device):
        self.images, self.batch, self.device = images.to(device), batch, device
        self.generator = torch.Generator().manual_seed(0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(
        self, masks: torch.Tensor, noise: float = NOISE, init: torch.Tensor | None = None
    ) -> torch.Tensor:
        masks, out = masks.to(self.device), []
        for start in range(0, len(self.images), self.batch):
            part = slice(start, start + self.batch)
            previous = init[part] if init is not None else None
            out.append(
                impute(self.images[part], masks[part], noise=noise, generator=self.generator, init=previous)
            )
        self.sync()
        return torch.cat(out)


def single_masks(
    ours: Ours, images: np.ndarray, orders: dict[str, torch.Tensor], side: int, args
) -> list[list[str]]:
    """One removal per image (ROAD, completeness), per mask kind and removed fraction."""
    rows = []
    subset = slice(0, args.scipy_images)
    lil, lil_out = with_noise(scipy_lil, np.random.default_rng(0))
    coo, coo_out = with_noise(scipy_coo, np.random.default_rng(0))
    for kind, order in orders.items():
        for fraction in FRACTIONS:
            masks = removal(order, fraction, side)
            scipy_masks = masks[subset].numpy()
            times = interleaved(
                {
                    "ours": lambda masks=masks: ours(masks),
                    "lil": lambda m=scipy_masks: lil(images[subset], m),
                    "coo": lambda m=scipy_masks: coo(images[subset], m),
                },
                repeats=args.repeats,
            )
            values = ours(masks, noise=0.0)[subset].double().cpu().numpy()
            reference = np.stack(lil_out)
            assert np.abs(reference - np.stack(coo_out)).max() < 1e-8
            rows.append(
                row(
                    side,
                    kind,
                    f"{fraction:.0%}",
                    times["ours"] / len(ours.images),
                    times["lil"] / len(lil_out),
                    times["coo"] / len(coo_out),
                    np.abs(values - reference).max(),
                )
            )
    return rows


def sweep(ours: Ours, images: np.ndarray, order: torch.Tensor, side: int, args) -> list[list[str]]:
    """The soundness sweep: ours over all 96 steps (warm and cold), SciPy on every stride-th step."""
    subset = slice(0, args.scipy_images)
    compared = SWEEP[:: args.sweep_stride]
    ours(removal(order, SWEEP[0], side))  # warm-up
    warm = cold = 0.0
    lil_time = coo_time = 0.0
    difference = 0.0
    previous = None
    lil, lil_out = with_noise(scipy_lil, np.random.default_rng(0))
    coo, _ = with_noise(scipy_coo, np.random.default_rng(0))
    for fraction in SWEEP:
        masks = removal(order, fraction, side)
        start = time.perf_counter()
        current = ours(masks, init=previous)
        warm += time.perf_counter() - start
        start = time.perf_counter()
        ours(masks)
        cold += time.perf_counter() - start
        if fraction in compared:
            values = ours(masks, noise=0.0, init=previous)[subset].double().cpu().numpy()
            scipy_masks = masks[subset].numpy()
            start = time.perf_counter()
            lil(images[subset], scipy_masks)
            lil_time += time.perf_counter() - start
            start = time.perf_counter()
            coo(images[subset], scipy_masks)
            coo_time += time.perf_counter() - start
            difference = max(difference, np.abs(values - np.stack(lil_out)).max())
        previous = current
    per_ours = len(SWEEP) * len(ours.images)
    per_scipy = len(compared) * len(lil_out)
    scipy_times = (lil_time / per_scipy, coo_time / per_scipy)
    return [
        row(side, "sweep, warm start", "98→3%", warm / per_ours, *scipy_times, difference),
        row(side, "sweep, cold start", "98→3%", cold / per_ours, *scipy_times, None),
    ]


def speedup(ratio: float) -> str:
    """SciPy time / our time, as "12×"."""
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"


def row(side, kind, removed, ours, lil, coo, difference) -> list[str]:
    """A table row; times in seconds per image."""
    return [
        f"{side}×{side}",
        kind,
        removed,
        f"{ours * 1e3:.2f}",
        f"{lil * 1e3:.1f}",
        f"{coo * 1e3:.1f}",
        speedup(lil / ours),
        speedup(coo / ours),
        "" if difference is None else f"{difference:.1e}",
    ]


def against_resnet(args) -> None:
    """Per image, at each batch size: a warm-started sweep step (the mean over steps spread along the sweep)
    and a cold single 50 % mask of `impute`, and one ResNet-18 forward pass, interleaved."""
    side = 224
    generator = torch.Generator().manual_seed(side)
    images = make_images(max(args.batches), side, generator)
    order = attribution_maps(len(images), side, generator).flatten(1).argsort(dim=1)
    steps = SWEEP[:: args.step_stride]
    masks = {fraction: removal(order, fraction, side) for fraction in steps}
    previous = {  # the sweep's step before each timed one, with its noise
        fraction: impute(images, removal(order, round(fraction + 0.01, 2), side), generator=generator)
        for fraction in steps
    }
    half = removal(order, 0.5, side)
    model = resnet18().eval()
    noise = torch.Generator().manual_seed(0)

    def sweep_steps(batch: int) -> None:
        for fraction in steps:
            impute(images[:batch], masks[fraction][:batch], init=previous[fraction][:batch], generator=noise)

    candidates = {}
    for batch in args.batches:
        candidates[f"step {batch}"] = lambda batch=batch: sweep_steps(batch)
        candidates[f"single {batch}"] = lambda batch=batch: impute(
            images[:batch], half[:batch], generator=noise
        )
        candidates[f"resnet {batch}"] = lambda batch=batch: model(images[:batch])
    with torch.no_grad():
        for fn in candidates.values():  # warm-up
            fn()
        times = interleaved(candidates, repeats=args.repeats)
    print(
        f"224×224, 3 channels; sweep step: warm-started from the previous step's noisy images, mean over the"
        f" {len(steps)} steps at {', '.join(f'{f:.0%}' for f in steps)} removed; single mask: 50 % removed"
        f" (LeRF), cold; median of {args.repeats} interleaved repeats; ms per image\n"
    )
    print("| batch | sweep step ms | single 50 % mask ms | ResNet-18 forward ms | step / forward |")
    print("|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        step = times[f"step {batch}"] / (len(steps) * batch)
        single = times[f"single {batch}"] / batch
        forward = times[f"resnet {batch}"] / batch
        cells = [str(batch), *(f"{t * 1e3:.1f}" for t in (step, single, forward)), f"{step / forward:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=8, help="images per workload for ours")
    parser.add_argument(
        "--scipy-images", type=int, default=4, help="the first this many are also run in SciPy"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sweep-stride", type=int, default=8, help="SciPy solves every this-many sweep steps"
    )
    parser.add_argument(
        "--against-resnet", action="store_true", help="time a step beside a ResNet-18 forward pass (CPU)"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64], help="with --against-resnet")
    parser.add_argument(
        "--step-stride", type=int, default=19, help="with --against-resnet: time every this-many sweep steps"
    )
    args = parser.parse_args()
    args.scipy_images = min(args.scipy_images, args.images)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    load = os.getloadavg()[0]
    print(f"machine: {machine()}{gpu}; torch {torch.__version__} ({args.threads} threads)")
    if args.against_resnet:
        print(f"load average at the start {load:.1f}")
        against_resnet(args)
        return
    import scipy

    print(f"SciPy {scipy.__version__} (SuperLU, single-threaded); load average at the start {load:.1f}")
    print(
        f"ours: {args.images} images in batches of {args.batch} on {device}, noise on; SciPy: the first"
        f" {args.scipy_images} images, one at a time; median of {args.repeats} interleaved repeats;"
        f" sweep: ours on all 96 steps, SciPy on every {args.sweep_stride}th, once;"
        " ms per image (per image and step for the sweep)\n"
    )
    header = [
        "size",
        "workload",
        "removed",
        "ours ms",
        "SciPy lil ms",
        "SciPy COO ms",
        "lil/ours",
        "COO/ours",
        "max abs diff vs SciPy",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    for side in args.sizes:
        generator = torch.Generator().manual_seed(side)
        images = make_images(args.images, side, generator)
        maps = attribution_maps(args.images, side, generator).flatten(1)
        orders = {
            "attribution, lowest removed (LeRF)": maps.argsort(dim=1),
            "attribution, highest removed (MoRF)": maps.argsort(dim=1, descending=True),
            "random": torch.rand(args.images, side * side, generator=generator).argsort(dim=1),
        }
        ours = Ours(images, args.batch, device)
        scipy_images = images.double().numpy()
        ours(removal(orders["random"], 0.5, side))  # warm-up
        for line in single_masks(ours, scipy_images, orders, side, args) + sweep(
            ours, scipy_images, orders["attribution, lowest removed (LeRF)"], side, args
        ):
            print("| " + " | ".join(line) + " |", flush=True)


if __name__ == "__main__":
    main()
