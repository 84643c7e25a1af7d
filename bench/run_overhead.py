"""Overhead of the run loop over bare Captum calls: attribution throughput into the store for IG, SmoothGrad,
Grad-CAM and the vanilla gradient, on the toy model, on the SMERF Simple-FR CNN and on a ResNet-18 at 224².

resnet18: a user model file (`--model model.py:build`, `attribench_core.reference_models.resnet18` with 10
classes, random weights seeded 0, ImageNet normalisation) on a user image folder (`--images DIR`) that the
bench writes first: JPEGs of 500×375 (ImageNet's typical size), so that decoding, resizing and cropping to
224² are paid as on real photos.

Bare, per batch with targets precomputed, on a copy of the model:
- ig: `IntegratedGradients(model).attribute(x, target=t, **explainer.attribute_kwargs())` (zero baseline,
  64 Gauss-Legendre steps, internal batch 64), as `methods.ig` calls it;
- smoothgrad: `NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=25, stdevs=σ,
  nt_samples_batch_size=64 // batch, target=t, abs=False)`, σ = `methods.smoothgrad`'s (0.15 × the input
  range), the same forward/backward passes of 64 images as ours (ours draws its noise from the run's
  generator on the CPU, Captum from torch's global one);
- gradcam: `LayerGradCam(model, cam_layer(model)).attribute(x, target=t, relu_attributions=True)`, then
  `LayerAttribution.interpolate(..., "bilinear")`;
- gradient: `Saliency(model).attribute(x, target=t, abs=False)`.

attribench: `runner.execute` for the explainer (prediction forward pass, explainer call with its input
checks, model-state guard and canonical model copy where the method needs one, journal write with fsync,
merge into a fresh HDF5 store). Also timed: the prediction forward passes alone (`model(x).argmax(1)` per
batch), which a bare-Captum user explaining predictions pays too; the second overhead counts them on the
bare side. All candidates of a model interleaved in one process, median of the repeats. One run per
`--compression` value (the store's share: compare lzf with none).

Then a breakdown of one more attribench run per explainer (the first compression), timed inside: the data
(`Dataset.batch`: decoding a folder's images), the prediction pass (the rest of `attribute_batch`), the
explainer call (input checks, model-state guard, method), the journal write, the merge and the rest.

Explainers may carry parameters (`ig:steps=4`). Run: python bench/run_overhead.py [--model toy smerf
resnet18] [--explainer ig smoothgrad gradcam gradient] [--n N] [--compression lzf none] [--threads 2]
[--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from PIL import Image
from timing import interleaved, machine

from attribench_core import plugins, runner
from attribench_core.explainer import Explainer
from attribench_core.model import cam_layer
from attribench_core.runner import RunContext, RunRequest, execute, plan, prepare

# metric whose (dataset, model) pair is the one timed; smerf: SoCo on SMERF's Simple-FR pair (`on=smerf`);
# resnet18: the bench's model file and image folder, under a metric that needs no regions
MODELS = {
    "toy": "core.relevance_mass",
    "smerf": "soco.deletion_accuracy",
    "resnet18": "soco.deletion_accuracy",
}
OPTIONS = {"smerf": {"on": "smerf"}}
# default image counts: IG costs ~30× more per image on the SMERF CNN, a ResNet-18 at 224² ~10× more again
IMAGES = {"toy": 512, "smerf": 64, "resnet18": 64}
PHOTO_SIZE = (500, 375)  # width, height of the written JPEGs
CLASSES = 10
MODEL_FILE = """from attribench_core.reference_models import resnet18
import torch


def build(num_classes):
    torch.manual_seed(0)
    return resnet18(num_classes)
"""


def write_resnet18_inputs(folder: Path, count: int) -> dict[str, object]:
    """A model file and `count` photo-like JPEGs in CLASSES class folders under `folder`; the request's
    fields that point a run at them."""
    (folder / "model.py").write_text(MODEL_FILE)
    photos = folder / "photos"
    rng = np.random.default_rng(0)
    width, height = PHOTO_SIZE
    ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0, 1, height)[:, None, None]
    for i in range(count):
        colour = rng.uniform(0, 255, 3)
        pixels = colour * ramp + rng.normal(0, 20, (height, width, 3))  # a lit surface with grain
        (photos / f"class{i % CLASSES}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(photos / f"class{i % CLASSES}/{i}.jpg")
    return {"model": f"{folder / 'model.py'}:build", "images": photos, "normalize": "imagenet"}


def bare_call(name: str, ctx: RunContext) -> Callable[[torch.Tensor, torch.Tensor], object]:
    """The bare Captum call of explainer `name`, with the arguments ours passes, on a copy of the model."""
    module = copy.deepcopy(ctx.resources.model(ctx.model_name).module)
    explainer = next(iter(ctx.explainers.values())).build()
    if name == "ig":
        ig = IntegratedGradients(module)
        return lambda x, t: ig.attribute(x, target=t, **explainer.attribute_kwargs())
    if name == "gradient":
        saliency = Saliency(module)
        return lambda x, t: saliency.attribute(x, target=t, abs=False)
    if name == "smoothgrad":
        tunnel = NoiseTunnel(Saliency(module))
        samples, chunk = explainer.params["samples"], explainer.params["internal_batch_size"]

        def smoothgrad(x: torch.Tensor, t: torch.Tensor) -> object:
            sigma = float(explainer.noise_scale(module, x)[0])
            per_pass = max(1, chunk // len(x))
            return tunnel.attribute(
                x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=per_pass, stdevs=sigma,
                target=t, abs=False,
            )  # fmt: skip

        return smoothgrad
    if name == "gradcam":
        cam = LayerGradCam(module, cam_layer(module))

        def gradcam(x: torch.Tensor, t: torch.Tensor) -> object:
            maps = cam.attribute(x, target=t, relu_attributions=True)
            return LayerAttribution.interpolate(maps, tuple(x.shape[2:]), interpolate_mode="bilinear")

        return gradcam
    raise SystemExit(f"no bare Captum call for explainer '{name}'; use ig, smoothgrad, gradcam or gradient")


def ours_run(ctx: RunContext, folder: Path) -> Callable[[], None]:
    """One attribench run of the context's explainers into a fresh store in `folder`."""

    def ours() -> None:
        shutil.rmtree(folder)
        folder.mkdir()
        execute(ctx, plan(ctx), keep_going=False)

    return ours


def candidates(
    model: str, specs: list[str], args, folder: Path, user: dict[str, object]
) -> tuple[dict[str, Callable], dict[str, tuple[RunContext, Path]], str, int]:
    """Bare and attribench candidates of every explainer on one model (one attribench candidate per
    compression); the first compression's context and store folder by explainer; a description of the
    images and their count."""
    registry = plugins.get_registry()
    found: dict[str, Callable] = {}
    contexts: dict[str, tuple[RunContext, Path]] = {}
    shape, count = "", 0
    for spec in specs:
        name = spec.split(":")[0]
        for compression in args.compression:
            store = folder / model / spec / compression / "bench.h5"
            store.parent.mkdir(parents=True)
            request = RunRequest(
                MODELS[model],
                explainers=[spec],
                num_imgs=args.n or IMAGES[model],
                batch_size=args.batch_size,
                store=store,
                compression=compression,
                options=OPTIONS.get(model, {}),
                **user,
            )
            ctx = prepare(registry, request)
            found[f"{spec} ours {compression}"] = ours_run(ctx, store.parent)
            contexts.setdefault(spec, (ctx, store.parent))
        module = ctx.resources.model(ctx.model_name).module
        images = ctx.dataset.batch(ctx.index).images
        count = len(images)
        shape = f"{count} × {'×'.join(map(str, images.shape[1:]))} ({ctx.dataset_name})"
        with torch.no_grad():
            targets = module(images).argmax(1)
        call = bare_call(name, ctx)

        def predict(module=module, images=images) -> None:
            with torch.no_grad():
                for start in range(0, len(images), args.batch_size):
                    module(images[start : start + args.batch_size]).argmax(1)

        found["predict"] = predict

        def bare(call=call, images=images, targets=targets) -> None:
            for start in range(0, len(images), args.batch_size):
                part = slice(start, start + args.batch_size)
                call(images[part], targets[part])

        found[f"{spec} bare"] = bare
    return found, contexts, shape, count


def breakdown(ctx: RunContext, folder: Path) -> dict[str, float]:
    """Seconds of one attribench run of `ctx`, split into data, prediction pass, explainer call, journal
    write, merge and the rest (planning, the loop); each phase timed by wrapping the function that does it."""
    spent: dict[str, float] = defaultdict(float)

    def timed(phase: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start

        return wrapper

    dataset, store = ctx.dataset, ctx.store
    originals = runner.attribute_batch, Explainer.__call__
    dataset.batch = timed("data", dataset.batch)
    store.write_batch, store.merge = timed("journal", store.write_batch), timed("merge", store.merge)
    runner.attribute_batch = timed("batch", runner.attribute_batch)
    Explainer.__call__ = timed("explainer", Explainer.__call__)
    try:
        start = time.perf_counter()
        ours_run(ctx, folder)()
        spent["total"] = time.perf_counter() - start
    finally:
        runner.attribute_batch, Explainer.__call__ = originals
        del dataset.batch, store.write_batch, store.merge
    spent["prediction"] = spent.pop("batch") - spent["data"] - spent["explainer"]
    spent["other"] = spent["total"] - sum(v for k, v in spent.items() if k != "total")  # planning, loop
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["toy", "smerf"], choices=tuple(MODELS))
    parser.add_argument("--explainer", nargs="+", default=["ig", "smoothgrad", "gradcam"])
    parser.add_argument("--n", type=int, help=f"images per model (default {IMAGES})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compression", nargs="+", default=["lzf"], help="the stores' compressions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load average at the start {os.getloadavg()[0]:.1f}; batches of {args.batch_size};")
    print(f"median of {args.repeats} interleaved repeats\n")
    print(
        "| model | images | explainer | store | bare Captum ms/image | attribench ms/image | overhead |"
        " prediction pass ms/image | overhead vs bare + prediction |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    phases = ("data", "prediction", "explainer", "journal", "merge", "other")
    shares: list[str] = []
    for model in args.model:
        with tempfile.TemporaryDirectory() as tmp:
            user = write_resnet18_inputs(Path(tmp), args.n or IMAGES[model]) if model == "resnet18" else {}
            found, contexts, shape, count = candidates(model, args.explainer, args, Path(tmp), user)
            times = interleaved(found, repeats=args.repeats)
            for spec, (ctx, store) in contexts.items():
                spent = breakdown(ctx, store)
                cells = " | ".join(
                    f"{spent[p] / count * 1e3:.2f} ({spent[p] / spent['total']:.0%})" for p in phases
                )
                total = spent["total"] / count * 1e3
                shares.append(f"| {model} | {spec} | {args.compression[0]} | {cells} | {total:.2f} |")
        predict = times["predict"]
        for spec in args.explainer:
            bare = times[f"{spec} bare"]
            for compression in args.compression:
                ours = times[f"{spec} ours {compression}"]
                print(
                    f"| {model} | {shape} | {spec} | {compression} | {bare / count * 1e3:.2f} |"
                    f" {ours / count * 1e3:.2f} | {(ours / bare - 1) * 100:+.1f} % |"
                    f" {predict / count * 1e3:.2f} | {(ours / (bare + predict) - 1) * 100:+.1f} % |",
                    flush=True,
                )
    print("\nattribench's time, ms/image (share of the run), one run each:\n")
    print(f"| model | explainer | store | {' | '.join(phases)} | total |")
    print(f"|---|---|---|{'---:|' * (len(phases) + 1)}")
    print("\n".join(shares))


if __name__ == "__main__":
    main()
