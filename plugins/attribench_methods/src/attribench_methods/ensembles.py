"""Noise ensembles (ours): VarGrad, and SmoothGrad / SmoothGrad² / VarGrad over Integrated Gradients.

All follow SmoothGrad's noise conventions (`gradients.SmoothGrad`): σ per `sigma_mode`, noise drawn on the
CPU from the run's generator one image at a time in (sample, image) order, so a map depends neither on
`internal_batch_size` nor on the device. Also home of the helpers that walk an expanded batch
(copies × images) in bounded passes, shared with `shap.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch

from attribench_core import Param
from attribench_methods.common import checked_batch, generator_or_default, target_gradient
from attribench_methods.gradients import (
    INTERNAL_BATCH_SIZE,
    IntegratedGradients,
    SmoothGrad,
)

REDUCTIONS = ("mean", "square", "variance")


def flat_passes(groups: int, size: int, chunk: int) -> Iterator[range]:
    """Flat indices k = group·size + member of `groups` groups of `size` members, in passes of ≤ chunk."""
    total = groups * size
    for start in range(0, total, chunk):
        yield range(start, min(start + chunk, total))


def runs(part: range, size: int) -> Iterator[tuple[int, slice, slice]]:
    """Split a pass of flat indices into runs within one group: (group, members, rows of the pass)."""
    k = part.start
    while k < part.stop:
        group, member = divmod(k, size)
        end = min(part.stop, (group + 1) * size)
        yield group, slice(member, member + end - k), slice(k - part.start, end - part.start)
        k = end


class Running:
    """Per-image mean of `values` (`mean`), of their squares (`square`), or their population variance
    (`variance`, Welford's update: exactly 0 for equal values, no cancellation). Copies come in order."""

    def __init__(self, like: torch.Tensor, reduction: str) -> None:
        self.reduction, self.count = reduction, 0
        self.total = torch.zeros_like(like)
        self.m2 = torch.zeros_like(like) if reduction == "variance" else None

    def add(self, sample: int, images: slice, values: torch.Tensor) -> None:
        """Add copy number `sample` (0, 1, ...) of `images`."""
        self.count = max(self.count, sample + 1)
        if self.m2 is None:
            self.total[images] += values * values if self.reduction == "square" else values
        else:  # self.total holds the running mean
            delta = values - self.total[images]
            self.total[images] += delta / (sample + 1)
            self.m2[images] += delta * (values - self.total[images])

    def result(self) -> torch.Tensor:
        if self.m2 is not None:
            return self.m2 / self.count
        return self.total / self.count


def noise_ensemble(
    explainer: SmoothGrad,
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attribute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reduction: str,
) -> torch.Tensor:
    """`reduction` over `samples` noisy copies of `attribute(noisy images, targets)`, with the noise of
    `explainer` (a SmoothGrad: `noise_scale`, `samples`, `internal_batch_size` images per call)."""
    inputs, targets = checked_batch(model, inputs, targets)
    generator = generator_or_default(explainer.generator)
    sigma = explainer.noise_scale(model, inputs)
    batch = len(inputs)
    running = Running(inputs, reduction)
    for part in flat_passes(explainer.params["samples"], batch, explainer.params["internal_batch_size"]):
        index = torch.tensor([k % batch for k in part], device=inputs.device)
        noise = torch.stack([torch.randn(inputs.shape[1:], generator=generator) for _ in part])
        noisy = inputs[index] + noise.to(inputs.device, inputs.dtype) * sigma[index]
        values = attribute(noisy, targets[index])
        for sample, images, rows in runs(part, batch):
            running.add(sample, images, values[rows])
    return running.result()


class VarGrad(SmoothGrad):
    """VarGrad (Adebayo et al. 2018): the per-pixel variance (population, 1/n) of the gradient over noisy
    copies of the input; ≥ 0. Same parameters, defaults (BAM's) and noise as SmoothGrad."""

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        def gradient(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return target_gradient(model, x, t)

        return noise_ensemble(self, model, inputs, targets, gradient, "variance")


def _param(source: tuple[Param, ...], name: str, **changes: object) -> Param:
    return dataclasses.replace(next(p for p in source if p.name == name), **changes)


class _IGEnsemble(SmoothGrad):
    """Integrated Gradients (zero baseline, Captum, via `gradients.IntegratedGradients`) of each noisy
    copy x + ε, ε ~ N(0, σ²·I), reduced over the copies. SoCo's settings: 20 samples, σ = 0.3 as the
    standard deviation (Captum NoiseTunnel's `stdevs`) in the model's input space (`sigma_mode=absolute`),
    IG with Captum's default 50 steps."""

    reduction: ClassVar[str]
    parameters = (
        _param(SmoothGrad.parameters, "samples", default=20, help="noisy copies per image (SoCo 20)"),
        _param(
            SmoothGrad.parameters,
            "sigma",
            default=0.3,
            help="noise standard deviation; its meaning depends on sigma_mode (SoCo 0.3, absolute)",
        ),
        _param(SmoothGrad.parameters, "sigma_mode", default="absolute"),
        _param(
            IntegratedGradients.parameters,
            "steps",
            default=50,
            help="IG steps per noisy copy, zero baseline (SoCo: Captum's default 50)",
        ),
        _param(IntegratedGradients.parameters, "method"),
        INTERNAL_BATCH_SIZE,
    )

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ig = IntegratedGradients(
            steps=self.params["steps"],
            method=self.params["method"],
            internal_batch_size=self.params["internal_batch_size"],
        )

        def integrated_gradients(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return ig.explain(model, x, t)

        return noise_ensemble(self, model, inputs, targets, integrated_gradients, self.reduction)


class IGSmoothGrad(_IGEnsemble):
    """IG-SG: the mean of IG maps over noisy copies (SmoothGrad over IG; Smilkov et al. 2017, SoCo)."""

    reduction = "mean"


class IGSmoothGradSquared(_IGEnsemble):
    """IG-SQ: the mean of squared IG maps over noisy copies (SmoothGrad² over IG; Hooker et al. 2019)."""

    reduction = "square"


class IGVarGrad(_IGEnsemble):
    """IG-VAR: the variance (1/n) of IG maps over noisy copies (VarGrad over IG; Adebayo et al. 2018)."""

    reduction = "variance"
