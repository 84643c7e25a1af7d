"""Robustness and input invariance: the checks plugin (`checks.max_sensitivity`, `checks.avg_sensitivity`,
`checks.local_lipschitz`, `checks.input_invariance`, run by attribench's runner with its store) against
Quantus 0.6.0's `MaxSensitivity`, `AvgSensitivity`, `LocalLipschitzEstimate` and `InputInvariance` on the
same model, images and explainer, side by side.

Model: the core toy CNN (trained or taken from `ATTRIBENCH_HOME`; its global max pool takes any size);
images: `--images` core.toy test images upsampled (nearest) to `--side`² and written as PNGs to a
temporary folder, which attribench reads with `--images DIR --size SIDE` and the model as a user's model
file with `--weights` (issue 8's road); Quantus gets the very tensors attribench loaded. Explainer: the
signed input gradient of the predicted class (`methods.gradient`, Captum `Saliency(abs=False)`; Quantus's
`explain_func` is the same Captum call), and Input × Gradient for input invariance.

Values: Quantus is given attribench's perturbations (`UniformNoise(radius, draw=j)` with the run's
generators) as its `perturb_func`, `normalise=False`, `abs=False` (LocalLipschitzEstimate normalises by
default), one batch: per-image values should agree to float rounding. Speed: the same work, a fresh store
for attribench (the map of x and of every draw computed and stored, then the metric), Quantus with its own
uniform noise of the same radius and count; each Quantus metric explains its own draws, while attribench's
three robustness metrics share theirs through the store (second and third metric: no attribution computed).

Run: python bench/quantus_robustness.py [--side 64] [--images 32] [--samples 10] [--radius 0.2]
[--repeats 2] (in a venv with Quantus 0.6.0: /work/qvenv, PYTHONPATH as for the tests).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import quantus
import torch
import torch.nn.functional as F
from attribench_checks.perturbations import ShiftAbsorbed, UniformNoise
from captum.attr import InputXGradient, Saliency
from PIL import Image
from timing import interleaved, machine

from attribench_core import perturbation_generators
from attribench_core.progress import no_progress
from attribench_core.runner import Resources, RunRequest, prepare, run
from attribench_core.testing import plugin_registry

ROBUSTNESS = {
    "checks.max_sensitivity": "max_sensitivity",
    "checks.avg_sensitivity": "avg_sensitivity",
    "checks.local_lipschitz": "local_lipschitz",
}
MODEL_FILE = """\
from attribench_core.builtin.toy import ToyCNN


def build(num_classes):
    return ToyCNN().build(num_classes, (3, 32, 32))
"""


def registry():
    import attribench_checks.plugin
    import attribench_methods.plugin

    return plugin_registry({"checks": attribench_checks.plugin, "methods": attribench_methods.plugin})


def write_folder(root: Path, count: int, side: int) -> dict:
    """The toy test images upsampled to side² as PNGs in class folders, the toy CNN as a model file and
    its weights: the `RunRequest` fields that point attribench at them."""
    resources = Resources(registry(), RunRequest(metric="checks.max_sensitivity"), no_progress, {})
    model = resources.model("core.toy_cnn").module
    data = resources.dataset("core.toy")
    batch = data.batch(np.arange(count))
    images = F.interpolate(batch.images, size=side, mode="nearest")
    names = data.class_names
    for i, (image, label) in enumerate(zip(images, batch.labels, strict=True)):
        folder = root / "photos" / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    (root / "photos" / "classes.txt").write_text("\n".join(names) + "\n")
    (root / "toy.py").write_text(MODEL_FILE)
    torch.save(model.state_dict(), root / "toy.pt")
    return {
        "images": root / "photos",
        "model": f"{root / 'toy.py'}:build",
        "weights": root / "toy.pt",
        "size": side,
        "num_imgs": count,
    }


def request(metric: str, store: Path, data: dict, explainer: str, options: dict) -> RunRequest:
    return RunRequest(metric, [explainer], store=store, options=options, **data)


def inputs(data: dict, options: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray]:
    """(the model, the images attribench evaluates in its order, their predictions, their dataset index)."""
    with tempfile.TemporaryDirectory() as folder:
        ctx = prepare(
            registry(), request("checks.max_sensitivity", Path(folder) / "s.h5", data, "gradient", options)
        )
    model = ctx.load_model(ctx.model_name)
    images = ctx.dataset.batch(ctx.index).images
    with torch.no_grad():
        return model, images, model(images).argmax(1), ctx.index


def explain_gradient(model, inputs, targets, **kwargs) -> np.ndarray:
    x = torch.as_tensor(inputs).requires_grad_(True)
    return Saliency(model).attribute(x, target=torch.as_tensor(targets), abs=False).detach().numpy()


def explain_input_x_gradient(model, inputs, targets, **kwargs) -> np.ndarray:
    x = torch.as_tensor(inputs).requires_grad_(True)
    return InputXGradient(model).attribute(x, target=torch.as_tensor(targets)).detach().numpy()


class OurDraws:
    """A Quantus `perturb_func` returning attribench's draw j at Quantus's step j (one batch of all the
    images, in the run's order)."""

    def __init__(self, index: np.ndarray, shape: tuple, radius: float, samples: int):
        self.index, self.shape, self.radius, self.samples, self.step = index, shape, radius, samples, 0

    def __call__(self, arr: np.ndarray, indices: np.ndarray, **kwargs) -> np.ndarray:
        draw = UniformNoise(self.radius, self.step % self.samples)
        self.step += 1
        images = torch.from_numpy(arr).reshape(self.shape)
        perturbed = draw.perturb(images, perturbation_generators(0, draw, self.index))
        return perturbed.reshape(len(arr), -1).numpy()


def quantus_metric(name: str, samples: int, radius: float, draws: OurDraws | None):
    """The Quantus metric with attribench's draws (values) or its own uniform noise (speed)."""
    noise = {"perturb_func": draws} if draws else {"lower_bound": radius}
    common = {"nr_samples": samples, "abs": False, "normalise": False, "disable_warnings": True}
    if name == "checks.max_sensitivity":
        return quantus.MaxSensitivity(**common, **noise)
    if name == "checks.avg_sensitivity":
        return quantus.AvgSensitivity(**common, **noise)
    lipschitz_noise = (
        {"perturb_func": draws}
        if draws
        else {
            "perturb_func": quantus.functions.perturb_func.batch_uniform_noise,
            "perturb_func_kwargs": {"lower_bound": radius},
        }
    )
    return quantus.LocalLipschitzEstimate(**common, **lipschitz_noise)


def theirs(metric, model, images, targets, explain) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=model,
            x_batch=images.numpy(),
            y_batch=targets.numpy(),
            a_batch=None,
            explain_func=explain,
            device="cpu",
            batch_size=len(images),
        )
    return np.asarray(scores, dtype=np.float64)


def ours(metric: str, store: Path, data: dict, options: dict, explainer: str = "gradient"):
    """The metric's run through attribench's runner: (its result for the explainer, attributions computed)."""
    outcome = run(registry(), request(metric, store, data, explainer, options))
    return next(iter(outcome.results.values())), outcome.computed


def compare_values(data, options, model, images, targets, index) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for metric, score in ROBUSTNESS.items():
            result, computed = ours(metric, Path(folder) / "s.h5", data, options)
            mine = result.per_sample[score][np.argsort(np.argsort(result.index))]
            draws = OurDraws(index, tuple(images.shape), options["radius"], options["samples"])
            reference = theirs(
                quantus_metric(metric, options["samples"], options["radius"], draws),
                model,
                images,
                targets,
                explain_gradient,
            )
            order = np.argsort(index)
            gap = np.abs(mine - reference[order]) / np.abs(reference[order])
            lines.append(
                f"| {metric} | {len(mine)} | {computed} | {np.mean(mine):.4f} | {np.mean(reference):.4f}"
                f" | {gap.max():.1e} |"
            )
    return lines


def speed(data, options, model, images, targets, repeats: int) -> list[str]:
    """Table rows: (work, Quantus s, ours s, ratio), medians of interleaved repeats."""

    def quantus_one(metric: str) -> None:
        draws = quantus_metric(metric, options["samples"], options["radius"], None)
        theirs(draws, model, images, targets, explain_gradient)

    def ours_fresh(*metrics: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            for metric in metrics:
                ours(metric, Path(folder) / "s.h5", data, options)

    stored = tempfile.TemporaryDirectory()
    ours("checks.max_sensitivity", Path(stored.name) / "s.h5", data, options)  # the maps, once

    def ours_from_store() -> None:
        _, computed = ours("checks.avg_sensitivity", Path(stored.name) / "s.h5", data, options)
        assert computed == 0

    work = {
        "one (max sensitivity)": (
            lambda: quantus_one("checks.max_sensitivity"),
            lambda: ours_fresh("checks.max_sensitivity"),
        ),
        "the three": (lambda: [quantus_one(m) for m in ROBUSTNESS], lambda: ours_fresh(*ROBUSTNESS)),
        "avg sensitivity, maps already stored": (
            lambda: quantus_one("checks.avg_sensitivity"),
            ours_from_store,
        ),
    }
    candidates = {}
    for name, (quantus_side, ours_side) in work.items():
        candidates[f"Quantus {name}"], candidates[f"ours {name}"] = quantus_side, ours_side
    times = interleaved(candidates, repeats=repeats)
    stored.cleanup()
    rows = []
    for name in work:
        theirs_s, ours_s = times[f"Quantus {name}"], times[f"ours {name}"]
        rows.append(
            f"| {side_label(images)} | {len(images)} | {options['samples']} | {name} | {theirs_s:.2f}"
            f" | {ours_s:.2f} | {theirs_s / ours_s:.2f}× |"
        )
    return rows


def side_label(images: torch.Tensor) -> str:
    return "×".join(map(str, images.shape[1:]))


def invariance(data, model, images, targets) -> list[str]:
    """Ours against Quantus InputInvariance (shift −1): per-image verdicts, and how exact each pair is."""
    lines = []
    flat = torch.nn.Sequential(*model.features, model.flatten, model.classifier).eval()
    with torch.no_grad():
        ours_pair = ShiftAbsorbed(-1.0).alter(torch.nn.Sequential(*flat).eval(), torch.Generator())
        exact = (ours_pair(images - 1) - flat(images)).abs().max()
        wrapper = quantus.helpers.model.pytorch_model.PyTorchModel(flat, channel_first=True, softmax=False)
        quantus_pair = wrapper.add_mean_shift_to_first_layer(-1, tuple(images[:1].shape))
        inexact = (quantus_pair(images - 1) - flat(images)).abs().max()
    lines.append(
        f"- the pair f(x) vs f'(x − 1), max |Δ logit|: ours {exact:.1e}, Quantus's"
        f" `add_mean_shift_to_first_layer` {inexact:.1e} (its zero padding is not shifted)"
    )
    failure = nested_failure(model, images, targets)
    lines.append(f"- Quantus on the toy CNN as registered (`Sequential(features=…)`): {failure}")
    with tempfile.TemporaryDirectory() as folder:
        for explainer, explain in (
            ("gradient", explain_gradient),
            ("input_x_gradient", explain_input_x_gradient),
        ):
            result, _ = ours("checks.input_invariance", Path(folder) / "s.h5", data, {}, explainer)
            verdicts = theirs(
                quantus.InputInvariance(input_shift=-1, disable_warnings=True), flat, images, targets, explain
            )
            lines.append(
                f"- {explainer}: ours {result.value:.3f} invariant (mean relative change"
                f" {result.values['relative_change']:.2e}), Quantus {verdicts.mean():.3f}"
            )
    return lines


def nested_failure(model, images, targets) -> str:
    try:
        out = theirs(
            quantus.InputInvariance(disable_warnings=True), model, images[:2], targets[:2], explain_gradient
        )
        return f"no error: {out}"
    except Exception as error:  # record whatever it raises
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return f"{type(error).__name__}: {error} (at {os.path.basename(frame.filename)}:{frame.lineno})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--radius", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    options = {"samples": args.samples, "radius": args.radius}
    with tempfile.TemporaryDirectory() as folder:
        data = write_folder(Path(folder), args.images, args.side)
        model, images, targets, index = inputs(data, options)
        print(
            f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), Quantus"
            f" {quantus.__version__}; load average at the start {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{len(images)} toy test images at {side_label(images)}, gradient maps, {args.samples} draws,"
            f" radius {args.radius}\n"
        )
        print(
            "| metric | images | attributions computed (ours) | ours mean | Quantus mean | max relative |Δ| |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for line in compare_values(data, options, model, images, targets, index):
            print(line)
        print()
        for line in invariance(data, model, images, targets):
            print(line)
        print("\n| input | images | draws | metrics | Quantus s | ours s | Quantus/ours |")
        print("|---|---:|---:|---|---:|---:|---:|")
        for line in speed(data, options, model, images, targets, args.repeats):
            print(line)


if __name__ == "__main__":
    main()
