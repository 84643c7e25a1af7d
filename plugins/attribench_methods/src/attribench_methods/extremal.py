"""Extremal Perturbation (Fong, Patrick & Vedaldi, ICCV 2019), the "preservation" game as TorchRay's
`torchray.attribution.extremal_perturbation` implements it, ported to plain torch (TorchRay itself is not a
dependency): a smooth mask of fixed area that keeps the target logit as high as possible when everything
outside it is blurred away."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attribench_core import Explainer, Param
from attribench_methods.common import checked_batch

# TorchRay's settings, for 224-pixel images; the size-dependent ones are scaled to the image (see below).
TORCHRAY_SIZE = 224
TORCHRAY_MAX_ITER = 800
TORCHRAY_STEP = 7
TORCHRAY_SIGMA = 21.0
TORCHRAY_MAX_BLUR = 20.0
REGUL_WEIGHT = 300.0  # initial weight of the area constraint
REGUL_GROWTH = 1.0035  # TorchRay's growth of that weight per iteration (for 800 iterations)
MOMENTUM = 0.9  # TorchRay's SGD: momentum 0.9, dampening 0.9
COLDNESS = 20.0  # temperature of the smooth max in the mask generator
TIE_TOLERANCE = 1e-6  # mask values closer than this count as tied in the area constraint


def area_penalty(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """mean((sort(values) − reference)²) per row of `values` `[B,N]`, with a gradient that does not depend
    on how the sort orders ties.

    At ties the sort's order decides which of the tied mask values are pulled towards 0 and which towards
    1, and that order differs between CPU and CUDA (and between sort implementations): TorchRay's masks
    start at exactly equal values, so it decided the whole mask (correlation 0.02 between CPU and CUDA
    maps, 0.49 between two tie orders on the CPU). Here tied values (within `TIE_TOLERANCE`) share the mean
    of their reference entries: the average of the subgradients over all tie orders. Away from ties this
    is exactly the original penalty."""
    rows, n = values.shape
    ordered = values.sort(dim=1).values
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:].detach() - ordered[:, :-1].detach() > TIE_TOLERANCE
    group = (starts.cumsum(dim=1) - 1 + n * torch.arange(rows, device=values.device)[:, None]).flatten()
    totals = torch.zeros(rows * n, device=values.device, dtype=values.dtype)
    sums = totals.index_add(0, group, reference.expand(rows, n).flatten())
    counts = totals.index_add(0, group, torch.ones_like(sums))
    target = (sums / counts.clamp(min=1))[group].view(rows, n)
    return ((ordered - target) ** 2).mean(dim=1)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with TorchRay's `imsmooth` kernel (exp(−i²/2σ²), |i| ≤ ⌈4σ⌉, normalised),
    but with replicated edges instead of TorchRay's zero padding (see `ExtremalPerturbation`)."""
    if sigma <= 0:
        return images
    width = math.ceil(4 * sigma)
    taps = torch.arange(-width, width + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    padded = F.pad(images, (width, width, width, width), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


class BlurPyramid:
    """TorchRay's `Perturbation` (blur type): `levels` copies of each image blurred with σ_l = max_blur·(1 −
    l/(levels−1)), so level 0 is the most blurred and the last level the image itself. `apply(mask)` picks,
    per pixel, the level m·(levels−1), interpolating linearly between the two nearest levels: m = 1 keeps the
    pixel, m = 0 blurs it fully. With `levels=2` this is exactly x·m + blur(x)·(1 − m)."""

    def __init__(self, images: torch.Tensor, levels: int, max_blur: float) -> None:
        self.levels = levels
        with torch.no_grad():
            fractions = torch.linspace(0, 1, levels).tolist()
            # [B, L, C, H, W]
            self.pyramid = torch.stack([gaussian_blur(images, (1 - f) * max_blur) for f in fractions], dim=1)

    def apply(self, mask: torch.Tensor) -> torch.Tensor:
        """Perturbed images `[B,C,H,W]` for masks `[B,1,H,W]` in [0,1]."""
        level = mask * (self.levels - 1)
        low = level.detach().floor().clamp(max=self.levels - 1)
        frac = level - low  # the gradient flows through the interpolation weight, as in TorchRay
        index = low.long().unsqueeze(1).expand(-1, 1, self.pyramid.shape[2], -1, -1)
        below = self.pyramid.gather(1, index).squeeze(1)
        above = self.pyramid.gather(1, (index + 1).clamp(max=self.levels - 1)).squeeze(1)
        return (1 - frac) * below + frac * above


class SmoothMaskGenerator:
    """TorchRay's `MaskGenerator`: a mask parameter at 1/`step` of the resolution becomes a smooth mask
    through a "smooth max-convolution": every output pixel takes a soft maximum (softmax with coldness 20)
    over the nearby parameters, each weighted by a flat-topped radial kernel exp(−2·max(d/σ − ½, 0)²). The
    full mask has a margin of ≈σ pixels on each side; `generate` returns it and its crop to the image."""

    def __init__(self, shape: tuple[int, int], step: int, sigma: float, device: torch.device) -> None:
        self.shape, self.step, self.sigma = shape, step, sigma
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = [math.ceil(z / step) for z in shape]
        self.shape_mid = [z + 2 * self.padding - (2 * self.radius + 1) + 1 for z in self.shape_in]
        self.shape_up = [step * z for z in self.shape_mid]
        self.shape_out = [z - step + 1 for z in self.shape_up]
        self.offset = round(self.margin)
        if any(out < self.offset + size for out, size in zip(self.shape_out, shape, strict=True)):
            raise ValueError(
                f"Extremal perturbation: mask_sigma={sigma} is too small for mask_step={step} "
                f"(the smooth mask would not cover the {shape[0]}×{shape[1]} image); use a larger one "
                "(TorchRay: 3 × mask_step)."
            )
        side = 2 * self.radius + 1
        # float32 index arithmetic exactly as TorchRay's, so that the kernel layout matches its masks
        inv = [torch.tensor(m, dtype=torch.float32) / torch.tensor(u, dtype=torch.float32)
               for m, u in zip(self.shape_mid, self.shape_up, strict=True)]  # fmt: skip
        uy, ux = torch.meshgrid(
            torch.arange(self.shape_out[0], dtype=torch.float32),
            torch.arange(self.shape_out[1], dtype=torch.float32),
            indexing="ij",
        )
        offsets = torch.arange(side, dtype=torch.float32)
        iy = torch.floor(inv[0] * uy)[None, None] + offsets[:, None, None, None] - self.padding
        ix = torch.floor(inv[1] * ux)[None, None] + offsets[None, :, None, None] - self.padding
        delta = torch.sqrt((uy - (self.margin + step * iy)) ** 2 + (ux - (self.margin + step * ix)) ** 2)
        weight = torch.exp(-2 * ((delta / sigma - 0.5).clamp(min=0) ** 2))
        self.weight = weight.reshape(1, side * side, *self.shape_out).to(device)

    def generate(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask cropped to the image `[B,1,H,W]`, full mask with margin `[B,1,*shape_out]`), in [0,1]."""
        side = 2 * self.radius + 1
        mask = F.unfold(params, (side, side), padding=(self.padding, self.padding))
        mask = mask.reshape(len(params), -1, *self.shape_mid)
        if self.step > 1:  # (with step 1 the nearest upsampling is the identity)
            mask = F.interpolate(mask, size=self.shape_up, mode="nearest")
            mask = mask[:, :, : self.shape_out[0], : self.shape_out[1]]
        mask = self.weight.to(mask.dtype) * mask
        mask = (mask * F.softmax(COLDNESS * mask, dim=1)).sum(dim=1, keepdim=True).clamp(0, 1)
        m = self.offset
        return mask[:, :, m : m + self.shape[0], m : m + self.shape[1]], mask


class ExtremalPerturbation(Explainer):
    """Extremal Perturbation, preservation game (Fong, Patrick & Vedaldi, ICCV 2019; TorchRay's code).

    Finds a smooth mask m of area `area` (SoCo: 0.3) that maximises the target logit of the perturbed image
    (each pixel blurred by an amount that falls with m, `BlurPyramid`), by gradient ascent on
    logit − λ_t·mean((sort(m) − r_a)²), where r_a holds (1 − area)·N zeros then ones and λ_t grows
    geometrically (tied mask values share their r_a entries: `area_penalty`). Returns the mask of the last
    iteration, `[B,1,H,W]` in [0,1]. The images of a batch are optimised together, `internal_batch_size`
    at a time (one optimiser over a `[b,1,h,w]` parameter; they do not interact, so the grouping does not
    change the masks). Deterministic: no randomness is used.

    As TorchRay: SGD with lr 0.01, momentum 0.9 and dampening 0.9 on a parameter initialised to 1 and
    clamped to [0,1] after each step; λ from 300; 8 blur levels; smooth max-convolution mask generator;
    horizontal flip of the perturbed image every other iteration (`jitter`); the area constraint counts
    the mask's margin (`area_with_margin`), so the kept part of the image is area·|mask with margin|/|image|
    (≈ 0.40 for area 0.3 at 224 px). Ours: `steps=300` instead of 800 for CPU budgets, with λ's growth per
    step set so that λ ends where TorchRay's does after 800; image-size-dependent settings at 0 mean
    TorchRay's 224-pixel values scaled to min(H, W) (`mask_step` 7, `mask_sigma` 21, `blur_sigma` 20); the
    blur replicates edges instead of padding with zeros (our inputs are in native range, where 0 is black
    rather than TorchRay's normalised mean colour).
    """

    channel_less = True
    parameters = (
        Param(
            "area",
            0.3,
            "fraction of the mask that is kept (SoCo 0.3; TorchRay default 0.1)",
            float,
            greater_than=0,
            less_than=1,
        ),
        Param("steps", 300, "optimisation iterations (TorchRay 800)", int, minimum=1),
        Param(
            "learning_rate", 0.01, "SGD learning rate (TorchRay 0.01, momentum 0.9)", float, greater_than=0
        ),
        Param(
            "blur_sigma",
            0.0,
            "σ of the strongest blur in pixels; 0: 20·min(H,W)/224 (TorchRay)",
            float,
            minimum=0,
        ),
        Param(
            "mask_step",
            0,
            "mask parameter stride in pixels; 0: round(7·min(H,W)/224) ≥ 1 (TorchRay)",
            int,
            minimum=0,
        ),
        Param(
            "mask_sigma",
            0.0,
            "mask smoothing radius in pixels; 0: 21·min(H,W)/224 (TorchRay)",
            float,
            minimum=0,
        ),
        Param("levels", 8, "blur levels the mask interpolates between (TorchRay 8)", int, minimum=2),
        Param("jitter", True, "flip the perturbed image horizontally every other iteration (TorchRay)", bool),
        Param(
            "area_with_margin",
            True,
            "the area constraint counts the mask's margin outside the image (TorchRay); false: image only",
            bool,
        ),
        Param(
            "internal_batch_size",
            32,
            "images whose masks are optimised together (≈0.13 GB each at 224 px, plus the model's share)",
            int,
            minimum=1,
        ),
    )

    def settings(self, height: int, width: int) -> tuple[float, int, float]:
        """(blur σ, mask step, mask σ) for an image of this size (TorchRay's, scaled, where one is 0)."""
        p = self.params
        scale = min(height, width) / TORCHRAY_SIZE
        blur = p["blur_sigma"] or TORCHRAY_MAX_BLUR * scale
        step = p["mask_step"] or max(1, round(TORCHRAY_STEP * scale))
        sigma = p["mask_sigma"] or TORCHRAY_SIGMA * scale
        return blur, step, sigma

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        blur, step, sigma = self.settings(*inputs.shape[2:])
        inputs, targets = checked_batch(model, inputs, targets)
        generator = SmoothMaskGenerator(tuple(inputs.shape[2:]), step, sigma, inputs.device)
        chunk = self.params["internal_batch_size"]
        return torch.cat(
            [
                self.optimise(model, inputs[i : i + chunk], targets[i : i + chunk], generator, blur)
                for i in range(0, len(inputs), chunk)
            ]
        )

    def optimise(
        self,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        generator: SmoothMaskGenerator,
        blur: float,
    ) -> torch.Tensor:
        """The masks of a group of images, optimised together (they do not interact)."""
        steps, area = self.params["steps"], self.params["area"]
        pyramid = BlurPyramid(inputs, self.params["levels"], blur)
        params = torch.ones(len(inputs), 1, *generator.shape_in, device=inputs.device, dtype=inputs.dtype)
        params.requires_grad_(True)
        with_margin = self.params["area_with_margin"]
        numel = math.prod(generator.shape_out if with_margin else inputs.shape[2:])
        reference = torch.ones(numel, device=inputs.device, dtype=inputs.dtype)
        reference[: int(numel * (1 - area))] = 0
        optimizer = torch.optim.SGD([params], lr=self.params["learning_rate"], momentum=MOMENTUM,
                                    dampening=MOMENTUM)  # fmt: skip
        # λ grows so that it ends where TorchRay's ends after its 800 iterations, whatever `steps` is
        growth = REGUL_GROWTH ** (TORCHRAY_MAX_ITER / steps)
        weight = REGUL_WEIGHT
        for t in range(steps):
            cropped, full = generator.generate(params)
            perturbed = pyramid.apply(cropped)
            if self.params["jitter"] and t % 2 == 0:
                perturbed = perturbed.flip(3)
            reward = model(perturbed).gather(1, targets[:, None]).squeeze(1)
            constrained = (full if with_margin else cropped).flatten(1)
            regul = area_penalty(constrained, reference) * weight
            (grad,) = torch.autograd.grad(-(reward - regul).sum(), params)
            params.grad = grad
            optimizer.step()
            with torch.no_grad():
                params.clamp_(0, 1)
            weight *= growth
        return cropped.detach()
