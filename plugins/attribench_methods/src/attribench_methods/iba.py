"""Information Bottleneck Attribution, per-sample bottleneck (Schulz, Sixt, Tombari & Landgraf, ICLR 2020),
following the authors' reference implementation (`IBA.pytorch.IBA`, BioroboticsLab/IBA), in plain torch."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from attribench_core import Explainer, Param, cam_layer, check_hookable
from attribench_methods.common import checked_batch, generator_or_default
from attribench_methods.gradients import INTERNAL_BATCH_SIZE
from attribench_methods.model_checks import UnsupportedModelError

ACTIVE_THRESHOLD = 0.01  # a unit is active if non-zero on more than 1% of the reference images (reference)


class _StopForward(Exception):
    """Raised by the estimation hook once the layer has run: the rest of the forward pass is not needed."""


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The reference's smoothing kernel: 2-D Gaussian of std σ, size 2·round(2σ)+1, normalised."""
    size = round(2 * sigma) * 2 + 1
    taps = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(taps[:, None] ** 2 + taps[None, :] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def smooth(maps: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """Per-channel convolution with `kernel` and reflected borders (replicated where the map is too small
    to reflect); the identity when `kernel` is None."""
    if kernel is None:
        return maps
    pad = (kernel.shape[-1] - 1) // 2
    mode = "reflect" if min(maps.shape[-2:]) > pad else "replicate"
    channels = maps.shape[1]
    weight = kernel.to(maps.device, maps.dtype).expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(maps, (pad, pad, pad, pad), mode=mode), weight, groups=channels)


class IBA(Explainer):
    """Information Bottleneck Attribution, per-sample bottleneck (Schulz et al., ICLR 2020).

    At a hidden layer (default: the model's CAM layer; `layer` names another by its module path) the
    feature map R is replaced by Z = λ·R + (1 − λ)·ε with ε ~ N(μ_R, σ_R²), μ_R and σ_R per unit
    estimated on `estimation_images` reference images (σ_R ≥ `min_std`), and λ = sigmoid(α) smoothed by
    a Gaussian (σ = `smooth_sigma` feature-map pixels). α (initialised to 5) is optimised per image with
    Adam (lr 1, 10 steps, each on `samples`=10 noise draws) to minimise CE(target) + β·mean(KL), the KL
    divergence of P(Z|R) from N(μ_R, σ_R²) averaged over all units (the reference's normalisation of
    β = 10 by the number of units). The map is the KL of the last iteration summed over channels, in bits,
    times (h·w)/(H·W) and bilinearly upsampled to H×W, `[B,1,H,W]` ≥ 0 (the reference's saliency mode).

    Defaults are the paper's and its code's, except `estimation_images` (32 here; the paper 10 000; the
    code warns under 1000). Units that are zero on ≥ 99% of the references are masked out, as in the code.
    Images of a batch are optimised together (one Adam over `[B,C,h,w]`; they do not interact), in
    forward passes of at most `internal_batch_size` noisy copies (at least one image's `samples`). Noise
    is drawn on the CPU from the run's generator in (step, image) order, so maps do not depend on
    `internal_batch_size` or the device. μ_R and σ_R are re-estimated on every call.
    """

    channel_less = True
    parameters = (
        Param("layer", "", "module path of the bottleneck layer; empty: the model's CAM layer", str),
        Param("beta", 10.0, "weight of the mean information loss (paper and code: 10)", float, minimum=0),
        Param("steps", 10, "Adam iterations per image (paper: 10)", int, minimum=1),
        Param("learning_rate", 1.0, "Adam learning rate (paper: 1)", float, greater_than=0),
        Param("samples", 10, "noise draws per iteration, one batch (paper: 10)", int, minimum=1),
        Param("initial_alpha", 5.0, "initial α, λ = sigmoid(α) (paper: 5)", float),
        Param(
            "smooth_sigma",
            1.0,
            "σ of the Gaussian smoothing λ, in feature-map pixels; 0: none (paper: 1)",
            float,
            minimum=0,
        ),
        Param("estimation_images", 32, "reference images for μ_R, σ_R (ours; paper 10 000)", int, minimum=2),
        Param("min_std", 0.01, "lower bound on σ_R (code: 0.01)", float, greater_than=0),
        Param("relu", False, "clamp Z at 0, for a post-ReLU layer (code: false)", bool),
        INTERNAL_BATCH_SIZE,
    )

    def bottleneck_layer(self, model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
        check_hookable(model, "IBA")
        path = self.params["layer"]
        if not path:
            layer = cam_layer(model, type(self).__name__)
            return next(name for name, m in model.named_modules() if m is layer), layer
        try:
            return path, model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"IBA: the model has no module '{path}' (parameter 'layer').") from None

    def estimate(
        self, model: torch.nn.Module, path: str, layer: torch.nn.Module, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-unit mean, std (unbiased, ≥ min_std) and active mask `[C,h,w]` of the layer's output on the
        reference images (moved to the device and dtype of `like`), merged chunk by chunk in float64."""
        references = self.references(self.params["estimation_images"])
        captured: list[torch.Tensor] = []

        def capture(module: Any, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                kind = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise UnsupportedModelError(
                    f"IBA needs a layer whose output is a feature map [B,C,h,w]; '{path}' gives {kind}."
                )
            captured.append(output.detach().clone())  # a later in-place op must not change it
            raise _StopForward

        count, mean, m2, nonzero = 0, None, None, None
        handle = layer.register_forward_hook(capture)
        try:
            for start in range(0, len(references), self.params["internal_batch_size"]):
                chunk = references[start : start + self.params["internal_batch_size"]].to(like)
                captured.clear()
                try:
                    with torch.no_grad():
                        model(chunk)
                except _StopForward:
                    pass
                if not captured:
                    raise UnsupportedModelError(f"IBA: the layer '{path}' did not run in the forward pass.")
                feats = captured[0].double()
                n, chunk_mean = len(feats), feats.mean(0)
                chunk_m2 = ((feats - chunk_mean) ** 2).sum(0)
                chunk_nonzero = (feats != 0).sum(0)
                if mean is None:
                    count, mean, m2, nonzero = n, chunk_mean, chunk_m2, chunk_nonzero
                else:
                    delta, total = chunk_mean - mean, count + n
                    mean = mean + delta * (n / total)
                    m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
                    count, nonzero = total, nonzero + chunk_nonzero
        finally:
            handle.remove()
        if mean is None or count < 2:
            raise ValueError(f"IBA needs at least 2 reference images; got {count}.")
        std = (m2 / (count - 1)).sqrt().clamp(min=self.params["min_std"])
        active = (nonzero.double() / count > ACTIVE_THRESHOLD).double()
        dtype = captured[0].dtype
        return mean.to(dtype), std.to(dtype), active.to(dtype)

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        path, layer = self.bottleneck_layer(model)
        mean, std, active = self.estimate(model, path, layer, inputs)
        p = self.params
        generator = generator_or_default(self.generator)
        kernel = gaussian_kernel(p["smooth_sigma"]) if p["smooth_sigma"] > 0 else None
        batch, samples = len(inputs), p["samples"]
        rows = max(1, p["internal_batch_size"] // samples)  # images per forward pass
        alpha = torch.full((batch, *mean.shape), p["initial_alpha"], device=inputs.device, dtype=mean.dtype)
        alpha.requires_grad_(True)
        optimizer = torch.optim.Adam([alpha], lr=p["learning_rate"])
        state: dict[str, Any] = {}

        def bottleneck(module: Any, args: Any, output: Any) -> torch.Tensor:
            state["calls"] += 1
            if state["calls"] > 1:
                raise UnsupportedModelError(
                    f"IBA: the layer '{path}' runs more than once per forward pass; name another (layer=...)."
                )
            part = state["part"]
            lam = smooth(torch.sigmoid(alpha[part]), kernel).repeat_interleave(samples, 0)
            keep_not = smooth(torch.sigmoid(-alpha[part]), kernel).repeat_interleave(samples, 0)  # 1 − λ
            # KL(N(λ·R', (1−λ)²) ‖ N(0,1)) per unit, R' = (R − μ)/σ: the information that passes
            normed = (output - mean) / std
            capacity = 0.5 * ((lam * normed) ** 2 + keep_not**2 - 1 - 2 * torch.log(keep_not)) * active
            state["capacity"] = capacity
            noise = mean + std * state["noise"]
            z = (lam * output + keep_not * noise) * active
            return z.clamp(min=0) if p["relu"] else z

        last = torch.zeros((batch, *mean.shape), device=inputs.device, dtype=mean.dtype)
        handle = layer.register_forward_hook(bottleneck)
        try:
            for _ in range(p["steps"]):
                grad = torch.zeros_like(alpha)
                for start in range(0, batch, rows):
                    part = slice(start, min(start + rows, batch))
                    n = part.stop - part.start
                    # one draw per image, in (step, image) order: the same whatever the chunking
                    draws = [torch.randn((samples, *mean.shape), generator=generator) for _ in range(n)]
                    noise = torch.cat(draws).to(inputs.device, mean.dtype)
                    state.update(calls=0, part=part, noise=noise)
                    logits = model(inputs[part].repeat_interleave(samples, 0))
                    labels = targets[part].repeat_interleave(samples)
                    model_loss = F.cross_entropy(logits, labels, reduction="none")
                    capacity = state["capacity"].view(n, samples, *mean.shape)
                    # per image: mean CE over its noise draws + β · mean KL over its units (and draws)
                    loss = model_loss.view(n, samples).mean(1) + p["beta"] * capacity.flatten(1).mean(1)
                    grad += torch.autograd.grad(loss.sum(), alpha)[0]
                    last[part] = capacity.detach().mean(1)
                alpha.grad = grad
                optimizer.step()
        finally:
            handle.remove()
        height, width = last.shape[-2:]
        bits = last.sum(1, keepdim=True).clamp(min=0) / math.log(2)
        bits = bits * (height * width) / (inputs.shape[2] * inputs.shape[3])
        return F.interpolate(bits, size=tuple(inputs.shape[2:]), mode="bilinear", align_corners=False)
