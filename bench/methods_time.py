"""Time per image of every installed explainer, and the overhead of our wrappers over the bare Captum call
for the methods that are one Captum call.

Models:
- `toy` (default): a batch of `core.toy` test images (3x32x32) on the trained toy CNN;
- `resnet18`: the reference torchvision-layout ResNet-18 (`attribench_core.reference_models`, full width,
  1000 classes, seeded random weights) behind ImageNet normalisation (`Normalized`), on smooth random
  images of `--size` (224 by default), the way a user's ImageNet model runs.

Each method runs as the runner calls it (input checks, model-state guard, canonical model copy where the
method needs one), default parameters unless `--params` overrides them. Where the explainer is a
`CaptumExplainer`, the same Captum class with the same arguments runs on the same batch (on a copy of the
model), interleaved with ours, and the ratio is printed; a Captum call that fails on the model (DeepLIFT on
a reused ReLU, say) leaves the row without one. Run:

    python bench/methods_time.py [--model toy|resnet18] [--size 224] [--batch 32] [--repeats 3]
        [--only gradient ig ...] [--params ig:steps=16 occlusion:window=16,stride=8 ...]
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from collections.abc import Callable

import torch
from captum import attr as captum_attr
from timing import interleaved, machine

from attribench_core import plugins
from attribench_core.errors import AttribenchError
from attribench_core.model import ModelInfo, attach_info
from attribench_core.params import parse_assignments
from attribench_core.runner import RunRequest, prepare

Batch = tuple[torch.nn.Module, torch.Tensor, torch.Tensor, Callable[[int], torch.Tensor], str]


def toy_batch(size: int) -> Batch:
    """The trained toy CNN, `size` toy test images, their predictions and training references."""
    request = RunRequest("core.relevance_mass", explainers=["random"], num_imgs=size)
    ctx = prepare(plugins.get_registry(), request)
    model = ctx.resources.model(ctx.model_name).module
    train = ctx.resources.dataset(ctx.dataset_name, "train")
    images = ctx.dataset.batch(ctx.index).images
    return model, images, predictions(model, images), lambda n: train.batch(range(n)).images, "toy images"


def resnet18_batch(size: int, side: int) -> Batch:
    """The reference ResNet-18 behind ImageNet normalisation, on `size` smooth random images `side`²."""
    from attribench_core.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, Normalized
    from attribench_core.reference_models import resnet18

    torch.manual_seed(0)
    model = Normalized(Normalize(IMAGENET_MEAN, IMAGENET_STD), resnet18(1000)).eval()
    attach_info(model, ModelInfo("resnet18", num_classes=1000))  # CAM layer: the default, layer4.1.conv2

    def smooth(n: int) -> torch.Tensor:
        coarse = torch.rand(n, 3, side // 16, side // 16, generator=torch.Generator().manual_seed(n))
        return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")

    images = smooth(size)
    return model, images, predictions(model, images), smooth, f"{side}x{side} images, ResNet-18"


def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("toy", "resnet18"), default="toy")
    parser.add_argument("--size", type=int, default=224, help="image side for --model resnet18")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="short names of the methods to time")
    parser.add_argument("--params", nargs="*", default=[], help="NAME:k=v,... parameter overrides")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    registry = plugins.get_registry()
    overrides = {}
    for text in args.params:
        name, _, assignments = text.partition(":")
        overrides[name] = parse_assignments(assignments, owner=name)
    if args.model == "toy":
        model, images, targets, references, what = toy_batch(args.batch)
    else:
        model, images, targets, references, what = resnet18_batch(args.batch, args.size)

    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; batch of {args.batch} {what}")
    print(f"{'method':26s} {'ms/image':>9s} {'bare Captum':>12s} {'overhead':>9s}  parameters")
    for entry in registry.entries("explainer", plugin="methods"):
        if (args.only and entry.name not in args.only) or not entry.meta.get("available", True):
            continue
        params = overrides.get(entry.name, {})
        explainer = entry.create(**params)

        def ours(explainer=explainer) -> None:
            generator = torch.Generator().manual_seed(0)
            explainer(model, images, targets, generator=generator, references=references)

        candidates = {"ours": ours}
        captum_class = getattr(explainer, "captum_class", None)
        if captum_class and hasattr(explainer, "attribute_kwargs"):
            method = getattr(captum_attr, captum_class)(copy.deepcopy(model))  # Captum may leave attributes

            def bare(method=method, explainer=explainer) -> None:
                x = images.clone().requires_grad_(True)
                method.attribute(x, target=targets, **explainer.attribute_kwargs())

            try:
                bare()
                candidates["bare"] = bare
            except Exception:  # LRP needs rules on the model, DeepLIFT fails on reused ReLUs: ours alone
                pass
        try:
            times = interleaved(candidates, repeats=args.repeats)
        except AttribenchError as exc:  # a method that refuses this model (RevealCancel on residual adds)
            print(f"{entry.qualified:26s} refuses: {str(exc)[:80]}...", flush=True)
            continue
        per_image = times["ours"] / args.batch * 1000
        if "bare" in times:
            overhead = f"{(times['ours'] / times['bare'] - 1) * 100:+8.1f}%"
            bare_ms = f"{times['bare'] / args.batch * 1000:9.2f} ms"
        else:
            overhead, bare_ms = "", ""
        given = ",".join(f"{k}={v}" for k, v in params.items())
        print(f"{entry.qualified:26s} {per_image:9.2f} {bare_ms:>12s} {overhead:>9s}  {given}", flush=True)


if __name__ == "__main__":
    main()
