"""Gradient-based explainers: vanilla gradient, Input × Gradient, Integrated Gradients (Captum), and
SmoothGrad / SmoothGrad² (ours: Captum's NoiseTunnel draws noise from torch's global RNG, and a run's noise
must come from its own generator)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from attribench_core import Explainer, Param, model_info
from attribench_methods.common import CaptumExplainer, checked_batch, generator_or_default, target_gradient

INTERNAL_BATCH_SIZE = Param(
    "internal_batch_size",
    64,
    "images per forward/backward pass when a method expands the batch",
    int,
    minimum=1,
)


class Gradient(CaptumExplainer):
    """Vanilla gradient (Simonyan et al. 2013): d logit_target / d input, signed (Captum `Saliency`)."""

    captum_class = "Saliency"

    def attribute_kwargs(self) -> dict[str, Any]:
        return {"abs": False}


class InputXGradient(CaptumExplainer):
    """Input × Gradient (Shrikumar et al. 2016): input times the target logit's gradient (Captum)."""

    captum_class = "InputXGradient"


class IntegratedGradients(CaptumExplainer):
    """Integrated Gradients (Sundararajan et al. 2017) from a black (zero) baseline (Captum).

    The path integral uses `steps` nodes of `method` (Captum's default Gauss-Legendre: the most accurate
    for a given step count); `internal_batch_size` bounds the images per pass.
    """

    captum_class = "IntegratedGradients"
    parameters = (
        Param(
            "steps",
            64,
            "integration steps along the path from the zero baseline (SMERF 64, BAM 25)",
            int,
            minimum=1,
        ),
        Param(
            "method",
            "gausslegendre",
            "quadrature rule for the path integral",
            str,
            ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"),
        ),
        INTERNAL_BATCH_SIZE,
    )

    def attribute_kwargs(self) -> dict[str, Any]:
        return {
            "baselines": 0.0,
            "n_steps": self.params["steps"],
            "method": self.params["method"],
            "internal_batch_size": self.params["internal_batch_size"],
        }


class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over `samples` copies of the input with Gaussian
    noise of standard deviation σ added.

    σ depends on `sigma_mode`: "range" → sigma × (hi − lo) of the model's input range (BAM's default with
    sigma 0.15), "absolute" → sigma (SMERF: 0.1 on [0,1] images, 64 samples), "image" → sigma × (max − min)
    of each image (what BAM's PAIR `saliency` code computes literally). Noise is drawn on the CPU from the
    run's generator, one image at a time in (sample, image) order, then moved to the input's device, so the
    result does not depend on `internal_batch_size` or on the device.
    """

    squared: ClassVar[bool] = False
    parameters = (
        Param("samples", 25, "noisy copies per image (BAM 25, SMERF 64)", int, minimum=1),
        Param(
            "sigma",
            0.15,
            "noise level; its meaning depends on sigma_mode (BAM 0.15, SMERF 0.1)",
            float,
            minimum=0,
        ),
        Param(
            "sigma_mode",
            "range",
            "range: sigma·(hi−lo) of the model's input range; absolute: sigma; "
            "image: sigma·(max−min) of each image",
            str,
            ("range", "absolute", "image"),
        ),
        INTERNAL_BATCH_SIZE,
    )

    def noise_scale(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """σ per image, shaped [B,1,1,1]."""
        sigma, mode = self.params["sigma"], self.params["sigma_mode"]
        if mode == "image":
            spread = inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1)
        else:
            lo, hi = model_info(model).input_range
            spread = torch.full((len(inputs),), hi - lo if mode == "range" else 1.0, device=inputs.device)
        return (sigma * spread).to(inputs.dtype).view(-1, 1, 1, 1)

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        generator = generator_or_default(self.generator)
        samples, chunk = self.params["samples"], self.params["internal_batch_size"]
        sigma = self.noise_scale(model, inputs)
        batch = len(inputs)
        # One pass holds `copies` noisy copies of `rows` images: whole batches when they fit, else slices.
        rows, per_pass = min(batch, chunk), max(1, chunk // batch)
        total = torch.zeros_like(inputs)
        for first in range(0, samples, per_pass):
            copies = min(per_pass, samples - first)
            for start in range(0, batch, rows):
                part = slice(start, start + rows)
                images = inputs[part].repeat(copies, 1, 1, 1)
                noise = torch.stack([torch.randn(images.shape[1:], generator=generator) for _ in images])
                noisy = images + noise.to(inputs.device, inputs.dtype) * sigma[part].repeat(copies, 1, 1, 1)
                grads = target_gradient(model, noisy, targets[part].repeat(copies))
                # Add one copy at a time so that the sums do not depend on internal_batch_size.
                for grad in grads.view(copies, -1, *inputs.shape[1:]):
                    total[part] += grad * grad if self.squared else grad
        return total / samples


class SmoothGradSquared(SmoothGrad):
    """SmoothGrad² : the mean of squared gradients over noisy copies, what BAM and SMERF actually ran
    (PAIR saliency `magnitude=True`, innvestigate postprocess "square"). Same parameters as SmoothGrad."""

    squared = True
