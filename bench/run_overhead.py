"""Overhead of the run loop over bare Captum calls: attribution throughput into the store for IG, SmoothGrad
and Grad-CAM, on the toy model and on the SMERF Simple-FR CNN.

Bare, per batch with targets precomputed, on a copy of the model:
- ig: `IntegratedGradients(model).attribute(x, target=t, **explainer.attribute_kwargs())` (zero baseline,
  64 Gauss-Legendre steps, internal batch 64), as `methods.ig` calls it;
- smoothgrad: `NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=25, stdevs=σ,
  nt_samples_batch_size=64 // batch, target=t, abs=False)`, σ = `methods.smoothgrad`'s (0.15 × the input
  range), the same forward/backward passes of 64 images as ours (ours draws its noise from the run's
  generator on the CPU, Captum from torch's global one);
- gradcam: `LayerGradCam(model, cam_layer(model)).attribute(x, target=t, relu_attributions=True)`, then
  `LayerAttribution.interpolate(..., "bilinear")`.

attribench: `runner.execute` for the explainer (prediction forward pass, explainer call with its input
checks, model-state guard and canonical model copy where the method needs one, journal write with fsync,
merge into a fresh HDF5 store). Also timed: the prediction forward passes alone (`model(x).argmax(1)` per
batch), which a bare-Captum user explaining predictions pays too; the second overhead counts them on the
bare side. All candidates of a model interleaved in one process, median of the repeats.

Run: python bench/run_overhead.py [--model toy smerf] [--explainer ig smoothgrad gradcam] [--n N]
[--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from timing import interleaved, machine

from attribench_core import plugins
from attribench_core.model import cam_layer
from attribench_core.runner import RunContext, RunRequest, execute, plan, prepare

# metric whose default (dataset, model) pair is the one timed; smerf: SoCo's default pair, Simple-FR
MODELS = {"toy": "core.relevance_mass", "smerf": "soco.deletion"}
IMAGES = {"toy": 512, "smerf": 64}  # default image counts: IG costs ~30× more per image on the SMERF CNN


def bare_call(name: str, ctx: RunContext) -> Callable[[torch.Tensor, torch.Tensor], object]:
    """The bare Captum call of explainer `name`, with the arguments ours passes, on a copy of the model."""
    module = copy.deepcopy(ctx.resources.model(ctx.model_name).module)
    explainer = next(iter(ctx.explainers.values())).build()
    if name == "ig":
        ig = IntegratedGradients(module)
        return lambda x, t: ig.attribute(x, target=t, **explainer.attribute_kwargs())
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
    raise SystemExit(f"no bare Captum call for explainer '{name}'; use ig, smoothgrad or gradcam")


def candidates(model: str, names: list[str], args, folder: Path) -> tuple[dict[str, Callable], str, int]:
    """Bare and attribench candidates of every explainer on one model; a description of the images and
    their count."""
    registry = plugins.get_registry()
    found: dict[str, Callable] = {}
    shape, count = "", 0
    for name in names:
        store = folder / model / name / "bench.h5"
        store.parent.mkdir(parents=True)
        request = RunRequest(
            MODELS[model],
            explainers=[name],
            num_imgs=args.n or IMAGES[model],
            batch_size=args.batch_size,
            store=store,
        )
        ctx = prepare(registry, request)
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

        def ours(ctx=ctx, store=store) -> None:
            shutil.rmtree(store.parent)
            store.parent.mkdir()
            execute(ctx, plan(ctx), keep_going=False)

        found[f"{name} bare"], found[f"{name} ours"] = bare, ours
    return found, shape, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["toy", "smerf"], choices=tuple(MODELS))
    parser.add_argument("--explainer", nargs="+", default=["ig", "smoothgrad", "gradcam"])
    parser.add_argument("--n", type=int, help=f"images per model (default {IMAGES})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load average at the start {os.getloadavg()[0]:.1f}; batches of {args.batch_size};")
    print(f"median of {args.repeats} interleaved repeats\n")
    print(
        "| model | images | explainer | bare Captum ms/image | attribench ms/image | overhead |"
        " prediction pass ms/image | overhead vs bare + prediction |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model in args.model:
        with tempfile.TemporaryDirectory() as tmp:
            found, shape, count = candidates(model, args.explainer, args, Path(tmp))
            times = interleaved(found, repeats=args.repeats)
        for name in args.explainer:
            bare, ours, predict = times[f"{name} bare"], times[f"{name} ours"], times["predict"]
            print(
                f"| {model} | {shape} | {name} | {bare / count * 1e3:.2f} | {ours / count * 1e3:.2f} |"
                f" {(ours / bare - 1) * 100:+.1f} % | {predict / count * 1e3:.2f} |"
                f" {(ours / (bare + predict) - 1) * 100:+.1f} % |",
                flush=True,
            )


if __name__ == "__main__":
    main()
