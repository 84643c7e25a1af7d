"""Randomisation checks: attribench's `checks.mprt` and `checks.random_logit` against Quantus `MPRT` and
`RandomLogit` on the same model, images and maps, side by side.

Model and images: the core toy CNN (`core.toy_cnn`, trained or taken from `ATTRIBENCH_HOME`) and a seeded
sample of `core.toy`'s test images (3×32×32). Maps: the input gradient of the explained logit (as
`methods.gradient`), reduced to one value per pixel as attribench's measures do (`pixel_maps`: |a| or a
summed over channels) before Quantus sees them, so that both sides compare the same `[N,1,32,32]` maps
(Quantus's own `abs` would take |Σ_c a| per channel instead of Σ_c |a|).

Values (same maps on both sides):
- MPRT, Spearman: Quantus randomises its own copy of the model (its generator, `named_modules` order); its
  `explain_func` records every map it computes, and ours (`similarity.spearman`) is applied to the same
  original and randomised maps. Both rank with average ranks for ties, so they should agree to float
  precision.
- MPRT and RandomLogit, SSIM: Quantus flattens each map to a vector before its `ssim`
  (`a.reshape(B, -1)`), so scikit-image slides a 7-long window along the rows of pixels (and across row
  ends), not a 7×7 window over the image as Adebayo et al. compare images. Shown: the flattened values,
  and Quantus's `ssim` given the 2-D maps (normalised as ours: 99th percentile), which should equal ours.
- RandomLogit: Quantus draws the other class from numpy's global generator (seed 42), attribench from the
  run seed per image; the `explain_func` records the classes Quantus asked for, and ours is applied to the
  maps of those classes.
- The whole checks, each with its own randomness (different random weights, different other classes):
  attribench's `checks.mprt` / `checks.random_logit` means beside Quantus's, not expected equal.

Layer order: Quantus randomises the modules that have `reset_parameters` in `named_modules` order (reversed
for "top_down"), attribench the modules that own parameters in the order a forward pass calls them: shown
for the toy CNN (the same) and for a residual block that calls its shortcut first (different).

Speed: the same work (randomise, explain N images per step, compare) timed side by side, interleaved:
Quantus `MPRT` (Spearman only) and `RandomLogit` (SSIM) with `batch_size` = N, against `attribench_core.
runner.run` of `checks.mprt` (three measures) and `checks.random_logit` on a fresh store each time (maps
computed and stored). Also the similarity alone on the same arrays (Quantus's `correlation_spearman`
computes the full 2N×2N correlation matrix and keeps its diagonal).

Run (in the Quantus venv, attribench on PYTHONPATH, ATTRIBENCH_HOME set):
python bench/quantus_randomisation.py [--images 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import quantus
import torch
from attribench_checks.layers import parameter_layers
from attribench_checks.randomisation import normalise_for_ssim
from attribench_checks.similarity import pixel_maps, spearman, ssim
from quantus.functions import similarity_func
from timing import interleaved, machine
from torch import nn

from attribench_core.progress import no_progress
from attribench_core.runner import Resources, RunRequest, run, sample_index
from attribench_core.testing import plugin_registry

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
NUM_CLASSES = 4


def load(count: int) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """(the toy CNN, `count` test images `[N,3,32,32]`, its predictions), as `attribench run` samples them."""
    resources = Resources(plugin_registry(PLUGINS), RunRequest(metric="checks.mprt"), no_progress, {})
    model = resources.model("core.toy_cnn").module.eval()
    dataset = resources.dataset("core.toy")
    images = dataset.batch(sample_index(len(dataset), count, 0)).images
    with torch.no_grad():
        prediction = model(images).argmax(1)
    return model, images.numpy(), prediction.numpy()


def gradient(model: nn.Module, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d logit_target / d input, `[N,3,H,W]`."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).requires_grad_(True)
    model(x).gather(1, torch.as_tensor(np.asarray(targets, dtype=np.int64))[:, None]).sum().backward()
    return x.grad.numpy()


class Recorder:
    """A Quantus `explain_func`: the gradient reduced to `[N,1,H,W]` pixel maps (|a| or a summed over
    channels), remembering every map and target it was asked for."""

    def __init__(self, absolute: bool):
        self.absolute = absolute
        self.maps: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def __call__(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs) -> np.ndarray:
        maps = pixel_maps(gradient(model, inputs, targets), absolute=self.absolute)[:, None]
        self.maps.append(maps)
        self.targets.append(np.asarray(targets))
        return maps.astype(np.float32)


def evaluate(metric, model, images, targets, recorder, a_batch=None):
    """A Quantus metric called on all the images in one batch, its warnings silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=images,
            y_batch=targets,
            a_batch=a_batch,
            explain_func=recorder,
            batch_size=len(images),
            device="cpu",
        )


def flat_ssim(a: np.ndarray, b: np.ndarray, batched: bool = True, **kwargs) -> np.ndarray:
    """Quantus's `ssim` as MPRT calls it (flattened rows), its list made an array for MPRT."""
    return np.asarray(similarity_func.ssim(a, b, batched=True))


def ssim_2d(a: np.ndarray, b: np.ndarray, batched: bool = True, **kwargs) -> list[float]:
    """Quantus's `ssim` on the maps as images: the flattened rows reshaped back to square maps."""
    side = int(np.sqrt(a.shape[1]))
    return np.asarray(
        similarity_func.ssim(a.reshape(-1, side, side), b.reshape(-1, side, side), batched=True)
    )


def quantus_mprt(model, images, targets, recorder, similarity) -> dict[str, list[float]]:
    metric = quantus.MPRT(similarity_func=similarity, layer_order="top_down", abs=False, normalise=False)
    return evaluate(metric, model, images, targets, recorder)


def mprt_values(model, images, targets) -> None:
    print("### MPRT (cascading from the top), the same maps on both sides\n")
    for absolute, name in ((True, "Spearman of |a|"), (False, "Spearman of a")):
        recorder = Recorder(absolute)
        scores = quantus_mprt(model, images, targets, recorder, similarity_func.correlation_spearman)
        original, layers = recorder.maps[0][:, 0], list(scores)[1:]
        randomised = recorder.maps[-len(layers) :]  # after the original, computed twice
        diffs = [
            np.abs(spearman(original, maps[:, 0]) - np.asarray(scores[layer])).max()
            for maps, layer in zip(randomised, layers, strict=True)
        ]
        means = [float(np.mean(scores[layer])) for layer in layers]
        print(
            f"- {name}: layers {layers}; Quantus means {np.round(means, 4).tolist()};"
            f" max |ours − Quantus| over samples and layers {max(diffs):.1e}"
        )
    try:
        quantus_mprt(model, images, targets, Recorder(True), similarity_func.ssim)
    except AttributeError as error:  # its ssim returns a list where MPRT calls .tolist()
        print(f"- Quantus MPRT with Quantus's own `ssim` fails: AttributeError: {error}")
    recorder = Recorder(True)
    flat = quantus_mprt(model, images, targets, recorder, flat_ssim)
    original, layers = normalise_for_ssim(recorder.maps[0][:, 0]), list(flat)[1:]
    rows = []
    for maps, layer in zip(recorder.maps[-len(layers) :], layers, strict=True):
        randomised = normalise_for_ssim(maps[:, 0])
        ours = ssim(original, randomised)
        theirs_2d = np.asarray(ssim_2d(original.reshape(len(ours), -1), randomised.reshape(len(ours), -1)))
        raw = [  # Quantus's flattened SSIM of the same normalised maps
            similarity_func.ssim(a.ravel(), b.ravel()) for a, b in zip(original, randomised, strict=True)
        ]
        rows.append((layer, ours.mean(), np.abs(ours - theirs_2d).max(), np.mean(raw), np.mean(flat[layer])))
    print(
        "\n| layer | ours SSIM (2-D, p99-normalised) | max abs diff vs Quantus `ssim` on 2-D maps |"
        " Quantus `ssim` flattened, same maps | Quantus MPRT's SSIM (unnormalised, flattened) |"
    )
    print("|---|---:|---:|---:|---:|")
    for layer, mine, diff, raw, default in rows:
        print(f"| {layer} | {mine:.4f} | {diff:.1e} | {raw:.4f} | {default:.4f} |")


def quantus_random_logit(model, images, targets, recorder, a_batch=None, **options) -> np.ndarray:
    metric = quantus.RandomLogit(num_classes=NUM_CLASSES, **options)
    return np.asarray(evaluate(metric, model, images, targets, recorder, a_batch))


def random_logit_values(model, images, targets) -> None:
    print("\n### RandomLogit, the same maps (Quantus's other classes) on both sides\n")
    for absolute, similarity, label, ours_fn in (
        (True, similarity_func.correlation_spearman, "Spearman of |a|", spearman),
        (False, similarity_func.correlation_spearman, "Spearman of a", spearman),
        (True, ssim_2d, "SSIM of |a|, Quantus's `ssim` on the 2-D maps", ssim),
    ):
        recorder = Recorder(absolute)
        normalise = similarity is ssim_2d
        scores = quantus_random_logit(
            model,
            images,
            targets,
            recorder,
            recorder(model, images, targets),
            similarity_func=similarity,
            abs=False,
            normalise=normalise,
            normalise_func=lambda a: normalise_for_ssim(a[:, 0])[:, None],
        )
        original, other = recorder.maps[0][:, 0], recorder.maps[1][:, 0]
        assert (recorder.targets[1] != targets).all()
        if normalise:
            original, other = normalise_for_ssim(original), normalise_for_ssim(other)
        diff = np.abs(ours_fn(original, other) - scores).max()
        print(f"- {label}: Quantus mean {scores.mean():.4f}, max |ours − Quantus| {diff:.1e}")
    scores = quantus_random_logit(model, images, targets, Recorder(False))
    print(f"- Quantus's defaults (signed maps ÷ max|a|, flattened SSIM): mean {np.mean(scores):.4f}")


def whole_checks(model, images, targets, count: int) -> None:
    print("\n### The whole checks, each with its own randomness\n")
    outcome = attribench("checks.mprt", count)["methods.gradient"]
    ours = {name: np.round(curve.y, 4).tolist() for name, curve in outcome.curves.items()}
    print(f"- attribench checks.mprt curves (layers 1..3 from the top): {ours}")
    recorder = Recorder(True)
    scores = quantus_mprt(model, images, targets, recorder, similarity_func.correlation_spearman)
    print(
        f"- Quantus MPRT Spearman of |a| per layer: "
        f"{[round(float(np.mean(v)), 4) for k, v in scores.items() if k != 'original']}"
    )
    logit = attribench("checks.random_logit", count)["methods.gradient"]
    print(f"- attribench checks.random_logit (SSIM of p99-normalised |a|): {logit.value:.4f}")


def attribench(metric: str, count: int, store: Path | None = None):
    """`metric`'s results for `methods.gradient` on `count` images: in `store` (its maps reused), or with
    its maps computed into a fresh store."""
    with tempfile.TemporaryDirectory() as folder:
        request = RunRequest(
            metric, ["methods.gradient"], num_imgs=count, store=store or Path(folder) / "s.h5"
        )
        return run(plugin_registry(PLUGINS), request).results


class ShortcutFirst(nn.Module):
    """A residual block that registers its shortcut last and calls it first."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.shortcut = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, NUM_CLASSES)

    def forward(self, x):
        identity = self.shortcut(x)
        return self.fc((self.bn(self.conv(x)) + identity).mean(dim=(2, 3)))


def layer_orders(model: nn.Module, images: np.ndarray) -> None:
    print("\n### Layer order (from the top)\n")
    for name, network in (("toy CNN", model), ("shortcut-first block", ShortcutFirst().eval())):
        ours = parameter_layers(network, torch.as_tensor(images[:1]))[::-1]
        theirs = [n for n, m in network.named_modules() if hasattr(m, "reset_parameters")][::-1]
        print(f"- {name}: attribench {ours}; Quantus {theirs}")


def speed(model, images, targets, repeats: int) -> None:
    count = len(images)
    print(f"\n### Speed: {count} images, median of {repeats} interleaved repeats\n")
    folder = tempfile.TemporaryDirectory()
    stored = Path(folder.name) / "s.h5"
    for metric in ("checks.mprt", "checks.random_logit"):
        attribench(metric, count, stored)  # the maps in the store: what a second run (or metric) reads
    times = interleaved(
        {
            "Quantus MPRT": lambda: quantus_mprt(
                model, images, targets, Recorder(True), similarity_func.correlation_spearman
            ),
            "attribench checks.mprt": lambda: attribench("checks.mprt", count),
            "Quantus RandomLogit": lambda: quantus_random_logit(model, images, targets, Recorder(False)),
            "attribench checks.random_logit": lambda: attribench("checks.random_logit", count),
            "attribench checks.mprt, stored": lambda: attribench("checks.mprt", count, stored),
            "attribench checks.random_logit, stored": lambda: attribench(
                "checks.random_logit", count, stored
            ),
        },
        repeats,
    )
    a = pixel_maps(gradient(model, images, targets), absolute=True)
    b = np.random.default_rng(0).permutation(a)
    similarity = interleaved(
        {
            "Quantus correlation_spearman": lambda: similarity_func.correlation_spearman(
                a.reshape(count, -1), b.reshape(count, -1), batched=True
            ),
            "attribench spearman": lambda: spearman(a, b),
        },
        repeats,
    )
    print("| work | Quantus s | attribench s | Quantus/attribench |")
    print("|---|---:|---:|---:|")
    for work, quantus_name, ours_name, source in (
        ("MPRT (3 layers, explain + compare)", "Quantus MPRT", "attribench checks.mprt", times),
        ("RandomLogit (explain + compare)", "Quantus RandomLogit", "attribench checks.random_logit", times),
        ("MPRT, attribench's maps in the store", "Quantus MPRT", "attribench checks.mprt, stored", times),
        (
            "RandomLogit, attribench's maps in the store",
            "Quantus RandomLogit",
            "attribench checks.random_logit, stored",
            times,
        ),
        ("Spearman alone, N pairs", "Quantus correlation_spearman", "attribench spearman", similarity),
    ):
        theirs, ours = source[quantus_name], source[ours_name]
        print(f"| {work} | {theirs:.3f} | {ours:.3f} | {theirs / ours:.2f}× |")
    folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, images, targets = load(args.images)
    print(
        f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), Quantus"
        f" {quantus.__version__}; load average at the start {os.getloadavg()[0]:.1f};"
        f" {args.images} core.toy test images, core.toy_cnn, input gradients\n"
    )
    mprt_values(model, images, targets)
    random_logit_values(model, images, targets)
    whole_checks(model, images, targets, args.images)
    layer_orders(model, images)
    speed(model, images, targets, args.repeats)


if __name__ == "__main__":
    main()
