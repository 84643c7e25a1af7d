"""Time per image of every installed explainer on the toy model, and the overhead of our wrappers over
the bare Captum call for the methods that are one Captum call.

For each method: a batch of 32 `core.toy` test images (3x32x32) through the explainer as the runner calls
it (model-state guard, canonical model copy where the method needs one), default parameters. Where the
explainer is a `CaptumExplainer`, the same Captum class with the same arguments runs on the same batch,
interleaved with ours, and the ratio is printed. Run: python bench/methods_time.py [--batch 32]
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings

import torch
from captum import attr as captum_attr
from timing import interleaved, machine

from attribench_core import plugins
from attribench_core.runner import RunRequest, prepare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="short names of the methods to time")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(os.cpu_count() or 1)
    registry = plugins.get_registry()
    ctx = prepare(registry, RunRequest("core.relevance_mass", explainers=["random"], num_imgs=args.batch))
    model = ctx.resources.model(ctx.model_name).module
    train = ctx.resources.dataset(ctx.dataset_name, "train")
    images = ctx.dataset.batch(ctx.index).images
    with torch.no_grad():
        targets = model(images).argmax(1)

    def references(n: int) -> torch.Tensor:
        return train.batch(range(n)).images

    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; batch of {args.batch} toy images")
    print(f"{'method':26s} {'ms/image':>9s} {'bare Captum':>12s} {'overhead':>9s}")
    for entry in registry.entries("explainer", plugin="methods"):
        if (args.only and entry.name not in args.only) or not entry.meta.get("available", True):
            continue
        explainer = entry.load()()

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
            except Exception:  # e.g. LRP needs rules set on the model: only our timing then
                pass
        times = interleaved(candidates, repeats=args.repeats)
        per_image = times["ours"] / args.batch * 1000
        if "bare" in times:
            overhead = f"{(times['ours'] / times['bare'] - 1) * 100:+8.1f}%"
            bare_ms = f"{times['bare'] / args.batch * 1000:9.2f} ms"
        else:
            overhead, bare_ms = "", ""
        print(f"{entry.qualified:26s} {per_image:9.2f} {bare_ms:>12s} {overhead:>9s}")


if __name__ == "__main__":
    main()
