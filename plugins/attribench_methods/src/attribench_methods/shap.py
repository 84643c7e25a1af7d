"""SHAP-family explainers against a background distribution: DeepSHAP (Captum's DeepLIFT per (input,
background) pair, averaged: what `DeepLiftShap` computes, in bounded passes) and expected gradients /
GradientSHAP (ours: Captum's `GradientShap` draws from torch's and NumPy's global RNGs)."""

from __future__ import annotations

import torch
from captum.attr import DeepLift

from attribench_core import Explainer, Param
from attribench_methods.common import checked_batch, generator_or_default, quiet_captum, target_gradient
from attribench_methods.ensembles import flat_passes, runs
from attribench_methods.gradients import INTERNAL_BATCH_SIZE
from attribench_methods.model_checks import deeplift_model
from attribench_methods.summation import (
    ProductRule,
    deeplift_nonlinearities,
    record_summation_gap,
    refuse_undefined,
)

BACKGROUND = Param(
    "background",
    "train",
    "train: background_size training images of the run (SMERF: 1000); zeros: one all-zero image (SoCo)",
    str,
    ("train", "zeros"),
)
BACKGROUND_SIZE = Param(
    "background_size",
    100,
    "training images in the background when background=train (SMERF 1000)",
    int,
    minimum=1,
)


def background_images(explainer: Explainer, inputs: torch.Tensor) -> torch.Tensor:
    """The background `[N,C,H,W]` on the inputs' device: the run's training images, or one zero image."""
    if explainer.params["background"] == "zeros":
        return torch.zeros_like(inputs[:1])
    images = torch.as_tensor(explainer.references(explainer.params["background_size"]))
    if images.dim() != 4 or images.shape[1:] != inputs.shape[1:] or len(images) == 0:
        raise ValueError(
            f"{type(explainer).__name__}: reference images of shape {tuple(images.shape)} do not match "
            f"inputs [B,{','.join(map(str, inputs.shape[1:]))}]."
        )
    return images.to(inputs.device, inputs.dtype)


class DeepShap(Explainer):
    """DeepSHAP (Lundberg & Lee 2017): the mean over background images b of DeepLIFT-Rescale attributions
    of x against reference b, as Captum's `DeepLiftShap` computes them; they sum to f(x) − mean_b f(b).

    `background=train` (default) takes `background_size` training images of the run (100; SMERF used
    1000, shap's own examples 100); `zeros` one all-zero reference (SoCo): DeepLIFT with the zero reference.
    Runs on `deeplift_model(model)` with `summation.ProductRule`, as `deeplift`: the sums are exact also for
    adjacent ReLU and max-pooling modules, overlapping max-pools, GELU/SiLU-like activation modules and
    element-wise products (squeeze-excitation). `internal_batch_size` images per pass (each (input,
    background) pair counts two: Captum runs input and reference together). As for `deeplift`: the
    per-image gap |Σ attributions − (f(x) − mean_b f(b))| / |f(x) − mean_b f(b)| is recorded as the
    diagnostic `summation_gap`, a gap above 0.1 % is warned about once naming the operations without a
    DeepLIFT rule, and models with attention or input normalisation are refused.
    """

    parameters = (BACKGROUND, BACKGROUND_SIZE, INTERNAL_BATCH_SIZE)

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        background = background_images(self, inputs)
        clone = deeplift_model(model, inputs, method="DeepShap")
        nonlinearities = deeplift_nonlinearities(clone, inputs[:1])
        refuse_undefined(nonlinearities, "DeepShap")
        method = DeepLift(clone)
        size = len(background)
        total = torch.zeros_like(inputs)
        missed = torch.zeros(len(inputs), dtype=inputs.dtype, device=inputs.device)  # Σ_b delta(x, b)
        for part in flat_passes(len(inputs), size, max(1, self.params["internal_batch_size"] // 2)):
            pairs = torch.tensor(list(part), device=inputs.device)
            image, reference = pairs // size, pairs % size
            x = inputs[image].requires_grad_(True)
            with quiet_captum(), ProductRule(2 * len(x)):  # Captum runs [inputs; references]
                attributions, delta = method.attribute(
                    x, baselines=background[reference], target=targets[image], return_convergence_delta=True
                )
            for one, _, rows in runs(part, size):  # the pairs of input `one` in this pass
                total[one] += attributions[rows].detach().sum(0)
                missed[one] += delta[rows].detach().sum()
        sums = total.flatten(1).sum(1) / size
        record_summation_gap(self, sums, sums - missed / size, "f(x) − mean_b f(b)", nonlinearities)
        return total / size


class GradientShap(Explainer):
    """Expected gradients / GradientSHAP (Erion et al. 2021; Lundberg & Lee 2017): the mean over `samples`
    draws of ∇f(b + α(x' − b)) · (x' − b), with b drawn uniformly from the background, α ~ U(0, 1) and
    x' = x + N(0, stdevs²·I), as Captum's `GradientShap` computes it; for a linear model it equals
    w · (x − mean of the drawn b). Background as for `deepshap` (`zeros` gives Monte-Carlo IG).

    Ours: the draws come from the run's generator on the CPU, the baseline indices and α first, then the
    noise one image at a time in (sample, image) order, so a map depends neither on `internal_batch_size`
    nor on the device. Defaults: 20 samples (Captum: 5), no input noise (Captum's and the paper's).
    """

    parameters = (
        Param("samples", 20, "(baseline, α) draws per image (ours; Captum's default 5)", int, minimum=1),
        Param(
            "stdevs",
            0.0,
            "standard deviation of Gaussian noise added to the input (Captum's 0)",
            float,
            minimum=0,
        ),
        BACKGROUND,
        BACKGROUND_SIZE,
        INTERNAL_BATCH_SIZE,
    )

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        background = background_images(self, inputs)
        generator = generator_or_default(self.generator)
        samples, batch, stdevs = self.params["samples"], len(inputs), self.params["stdevs"]
        choice = torch.randint(len(background), (samples * batch,), generator=generator)
        alpha = torch.rand(samples * batch, generator=generator, dtype=inputs.dtype)
        total = torch.zeros_like(inputs)
        for part in flat_passes(samples, batch, self.params["internal_batch_size"]):
            index = torch.tensor([k % batch for k in part], device=inputs.device)
            x = inputs[index]
            if stdevs > 0:
                noise = torch.stack([torch.randn(inputs.shape[1:], generator=generator) for _ in part])
                x = x + stdevs * noise.to(inputs.device, inputs.dtype)
            base = background[choice[part.start : part.stop].to(inputs.device)]
            a = alpha[part.start : part.stop].to(inputs.device).view(-1, 1, 1, 1)
            values = target_gradient(model, base + a * (x - base), targets[index]) * (x - base)
            for _, images, rows in runs(part, batch):
                total[images] += values[rows]
        return total / samples
