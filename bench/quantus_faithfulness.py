"""Faithfulness checks: attribench's `checks.infidelity` and `checks.faithfulness_correlation`
(`attribench_checks.faithfulness`, batched forward passes in `faithfulness_metrics`) against Quantus 0.6.0
`Infidelity` and `FaithfulnessCorrelation` on the same model, images and maps, side by side.

Model: the core toy CNN (`core.toy_cnn`, global max pool: it takes any image size); images: the core.toy
test split (seeded sample) upsampled (nearest) to `--side`; maps: input×gradient of the predicted logit
(3 channels); target: the prediction. Both sides use the logits and the image's min as baseline (Quantus's
"black" = our `--baseline min`), no normalisation (`normalise=False`; Pearson ignores it anyway).

Values, on Quantus's own perturbations (recorded or rebuilt) through our pure functions and forward passes:
- FaithfulnessCorrelation draws `subset_size` of the C·H·W input *elements* per run (`np.random.choice`,
  recorded here by wrapping it); ours is given the same element masks. Our metric draws *pixels* (all
  channels, Bhatt et al.'s features), so its own values differ: both means are shown.
- Infidelity in Quantus 0.6.0 is not random: for each patch of a p×p grid in raster order it replaces
  that patch *and all earlier ones* (its loop reuses the perturbed array), takes I = x − x′ (not binary),
  and repeats the identical computation `n_perturb_samples` times. We rebuild those cumulative masks and
  score them with `infidelity(scaled=False)`. Our metric's own values (Yeh et al.: random Gaussian I,
  optimal scale; or random single squares with binary I) measure something else: shown for reference.

Speed: the same number of forward rows on each side for one map: N random subsets per image (Quantus: N
passes of B images; ours: `FaithfulnessCorrelation.evaluate`, all subsets of the batch in few passes), and
the K grid patches (Quantus, `n_perturb_samples=1`) against our metric's square infidelity with K
perturbations. Then the same for three maps of the same images (input×gradient, gradient, noise), as a
run with three explainers: Quantus does all its forward passes again for each map, our metric computes the
model's outputs once and reuses them (a fresh metric each timed call, so nothing is cached between calls).

Run: PYTHONPATH=... /work/qvenv/bin/python bench/quantus_faithfulness.py [--side 64] [--images 16]
[--subsets 100] [--patch 4] [--repeats 3] [--threads 1] (needs `pip install -r bench/requirements.txt`).
"""

from __future__ import annotations

import argparse
import warnings
from types import SimpleNamespace

import numpy as np
import quantus
import torch
import torch.nn.functional as F
from attribench_checks import faithfulness
from attribench_checks.faithfulness_metrics import (
    FaithfulnessCorrelation,
    Infidelity,
    PerturbationMetric,
    target_outputs,
)
from timing import interleaved, machine

from attribench_core import derive_seed
from attribench_core.plugins import get_registry
from attribench_core.progress import no_progress
from attribench_core.runner import Resources, RunRequest, sample_index

SUBSET_SIZE = 224  # Quantus's default


def load(
    count: int, side: int
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(toy CNN, `count` test images `[N,3,side,side]`, predictions, input×gradient maps, gradients)."""
    resources = Resources(get_registry(), RunRequest(metric="checks.infidelity"), no_progress, {})
    model = resources.model("core.toy_cnn").module.eval()
    dataset = resources.dataset("core.toy")
    images = dataset.batch(sample_index(len(dataset), count, 0)).images
    images = F.interpolate(images, size=side, mode="nearest")
    x = images.clone().requires_grad_(True)
    logits = model(x)
    targets = logits.argmax(dim=1)
    logits.gather(1, targets[:, None]).sum().backward()
    return model, images, targets, (x.grad * images).detach(), x.grad.detach()


def call_quantus(metric, model, images, targets, maps) -> np.ndarray:
    """A Quantus metric's per-sample values, all images in one batch (its fastest), warnings off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(
            metric(
                model=model,
                x_batch=images.numpy(),
                y_batch=targets.numpy(),
                a_batch=maps.numpy(),
                device="cpu",
                batch_size=len(images),
            )
        )


def quantus_correlation(model, images, targets, maps, subsets: int, record: list | None = None):
    """Quantus FaithfulnessCorrelation per sample; `record` collects its subset draws."""
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=subsets,
        subset_size=SUBSET_SIZE,
        perturb_baseline="black",
        normalise=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    choice = np.random.choice

    def recording_choice(*args, **kwargs):
        drawn = choice(*args, **kwargs)
        record.append(drawn)
        return drawn

    np.random.choice = recording_choice if record is not None else choice
    try:
        return call_quantus(metric, model, images, targets, maps)
    finally:
        np.random.choice = choice


def element_masks(record: list, count: int, subsets: int, shape: tuple[int, ...]) -> torch.Tensor:
    """`[B, N, C, H, W]` masks of Quantus's recorded draws (run by run, image by image)."""
    masks = np.zeros((count, subsets, int(np.prod(shape))), dtype=bool)
    for k, drawn in enumerate(record):
        masks[k % count, k // count, drawn] = True
    return torch.from_numpy(masks.reshape(count, subsets, *shape))


def drops_of(model, images, targets, perturbed) -> torch.Tensor:
    """`[B, N]` target-output drops of perturbed `[B, N, C, H, W]`, as our metrics run the model."""
    reference = target_outputs(model, images, targets)
    return reference[:, None] - PerturbationMetric.outputs(model, perturbed, targets)


def ours_correlation_on(model, images, targets, maps, masks) -> np.ndarray:
    """Our per-sample faithfulness correlation on given element masks `[B, N, C, H, W]`."""
    baseline = faithfulness.baseline_values(images, "min")
    drops = drops_of(model, images, targets, faithfulness.removed(images, masks, baseline))
    predicted = faithfulness.attribution_sums(maps, masks.to(maps.dtype))
    return faithfulness.pearson(predicted.double(), drops.double()).numpy()


def quantus_infidelity(model, images, targets, maps, patch: int, samples: int = 1) -> np.ndarray:
    metric = quantus.Infidelity(
        perturb_baseline="black",
        perturb_patch_sizes=[patch],
        n_perturb_samples=samples,
        normalise=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    return call_quantus(metric, model, images, targets, maps)


def cumulative_grid_masks(count: int, side: int, patch: int) -> torch.Tensor:
    """`[B, K, H, W]`: step k removes the first k + 1 patches of the p×p grid in raster order."""
    blocks = side // patch
    order = torch.arange(blocks * blocks).view(blocks, blocks)
    block_of_pixel = order.repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    masks = block_of_pixel[None] <= torch.arange(blocks * blocks)[:, None, None]
    return masks[None].expand(count, -1, -1, -1)


def ours_infidelity_on_grid(model, images, targets, maps, patch: int) -> np.ndarray:
    """Our unscaled infidelity on Quantus's cumulative grid removals, with I = x − x′ as Quantus takes it."""
    masks = cumulative_grid_masks(len(images), images.shape[-1], patch)
    perturbed = faithfulness.removed(images, masks, faithfulness.baseline_values(images, "min"))
    drops = drops_of(model, images, targets, perturbed)
    predicted = faithfulness.attribution_sums(maps, images[:, None] - perturbed)
    return faithfulness.infidelity(predicted.double(), drops.double(), scaled=False).numpy()


def metric_values(metric, model, images, targets, maps) -> np.ndarray:
    """Our metric's per-sample values with its own draws (generator per image, seed 0)."""
    ctx = SimpleNamespace(rng=lambda purpose: np.random.default_rng(derive_seed(0, "metric", purpose)))
    index = np.arange(len(images))
    predicted, drops = metric.evaluate(ctx, model, images, maps, targets, index)
    return metric.score(predicted.double(), drops.double()).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, images, targets, maps, gradients = load(args.images, args.side)
    count, side, patch = len(images), args.side, args.patch
    steps = (side // patch) ** 2
    print(f"{machine()}, torch threads {args.threads}; Quantus {quantus.__version__}")
    print(f"{count} toy images at {side}×{side}, input×gradient maps, toy CNN logits\n")
    correlation = dict(subsets=args.subsets, subset_size=SUBSET_SIZE, baseline="min")
    square = dict(perturbation="square", patch=patch, baseline="min", scale="none", perturbations=steps)

    record: list = []
    np.random.seed(0)
    theirs = quantus_correlation(model, images, targets, maps, args.subsets, record)
    masks = element_masks(record, count, args.subsets, tuple(images.shape[1:]))
    same = ours_correlation_on(model, images, targets, maps, masks)
    own = metric_values(FaithfulnessCorrelation(**correlation), model, images, targets, maps)
    print(f"FaithfulnessCorrelation, {args.subsets} subsets of {SUBSET_SIZE}:")
    print(f"  on Quantus's element subsets: max |ours − Quantus| = {np.nanmax(np.abs(same - theirs)):.2e}")
    print(
        f"  means: Quantus (elements) {np.nanmean(theirs):.4f},"
        f" ours (pixels, own draws) {np.nanmean(own):.4f}"
    )

    theirs = quantus_infidelity(model, images, targets, maps, patch)
    grid = ours_infidelity_on_grid(model, images, targets, maps, patch)
    relative = np.abs(grid - theirs) / np.abs(theirs)
    print(f"Infidelity, {patch}×{patch} patches ({steps} cumulative grid steps):")
    print(f"  on Quantus's perturbations: max relative |ours − Quantus| = {relative.max():.2e}")
    repeated = quantus_infidelity(model, images, targets, maps, patch, samples=2)
    print(f"  n_perturb_samples 2 vs 1: max |difference| = {np.abs(repeated - theirs).max():.2e}")
    print(f"  means: Quantus {theirs.mean():.4g}, ours on its grid {grid.mean():.4g}")
    for name, metric in (
        ("square, none", Infidelity(**square)),
        ("default: gaussian 0.1, optimal", Infidelity()),
    ):
        print(f"  ours ({name}): mean {metric_values(metric, model, images, targets, maps).mean():.4g}")

    noise = torch.rand(maps.shape, generator=torch.Generator().manual_seed(0))
    others = [maps, gradients, noise]  # input×gradient, gradient, uniform noise

    def ours(metric_class, options, explained):
        metric = metric_class(**options)  # fresh: its drops are computed once, then reused for each map
        return [metric_values(metric, model, images, targets, m) for m in explained]

    def quantus_maps(score, explained):
        return [score(model, images, targets, m) for m in explained]

    times = interleaved(
        {
            "quantus correlation 1": lambda: quantus_correlation(model, images, targets, maps, args.subsets),
            "ours correlation 1": lambda: ours(FaithfulnessCorrelation, correlation, others[:1]),
            "quantus correlation 3": lambda: quantus_maps(
                lambda *a: quantus_correlation(*a, args.subsets), others
            ),
            "ours correlation 3": lambda: ours(FaithfulnessCorrelation, correlation, others),
            "quantus infidelity 1": lambda: quantus_infidelity(model, images, targets, maps, patch),
            "ours infidelity 1": lambda: ours(Infidelity, square, others[:1]),
            "quantus infidelity 3": lambda: quantus_maps(lambda *a: quantus_infidelity(*a, patch), others),
            "ours infidelity 3": lambda: ours(Infidelity, square, others),
        },
        args.repeats,
    )
    print(f"\nmedian seconds of {args.repeats} interleaved repeats ({count} images; 1 map, or 3 maps:")
    print("input×gradient, gradient, noise; ours computes the model's outputs once for the 3):")
    for family in ("correlation", "infidelity"):
        for maps_count in (1, 3):
            theirs_s, ours_s = times[f"quantus {family} {maps_count}"], times[f"ours {family} {maps_count}"]
            line = f"Quantus {theirs_s:.2f} s, ours {ours_s:.2f} s, {theirs_s / ours_s:.1f}×"
            print(f"  {family}, {maps_count} map(s): {line}")


if __name__ == "__main__":
    main()
