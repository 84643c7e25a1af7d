"""BAM's "functionally insignificant patch" for the input independence rate (IIR).

A perturbation δ inside the object's mask that changes the scene_only model's logits as little as
possible while staying large (research notes §3.6, `scripts/construct_delta_patch.py`): plain gradient
descent on

    L(δ) = ‖f(x+δ) − f(x)‖₂ − α‖δ‖₂ + β Σ [relu(x+δ − hi) + relu(lo − x − δ)],

δ set to zero outside the mask after every step. The original's range term, Σ[relu(x+δ−lo) +
relu(hi−x−δ)], has the same gradient (it is constant inside the bounds); this form is zero there.

Units. The original ran on 0–255 images (α = β = 0.01, step 500, 300 steps). Here `alpha`, `beta` and
`lr` keep that meaning, per 8-bit grey level g = (hi − lo)/255 of our images (1/255 for [0,1]): the loss
in image units has α/g and β/g, and the step is lr·g² (500/255² ≈ 0.0077 for [0,1]). Gradient descent
then follows exactly the original's path for a model with the same logits on the rescaled image
(tested). Applying α = β = 0.01 to δ in [0,1] units instead would weaken the size and range terms
255-fold against the logit term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

GREY_LEVELS = 255
BoolArray = torch.Tensor | np.ndarray
FloatArray = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class PatchResult:
    """`patched` `[B,C,H,W]` (clipped to the bounds) = images + `delta` (zero outside the mask); the
    logit distance ‖f(patched) − f(images)‖₂ `[B]`; whether the predicted class is unchanged `[B]`."""

    patched: torch.Tensor
    delta: torch.Tensor
    logit_distance: torch.Tensor
    prediction_unchanged: torch.Tensor


def _logit_distance(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(logits - reference, dim=1)


def optimise_patch(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    init: torch.Tensor | None = None,
    steps: int = 300,
    lr: float = 500.0,
    alpha: float = 0.01,
    beta: float = 0.01,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> PatchResult:
    """Optimise δ per image of `images` `[B,C,H,W]`, inside `masks` `[B,H,W]` (bool), for `model` (in eval
    mode; its parameters are left untouched); see the module docstring for the loss and the units of
    `alpha`, `beta` and `lr`.

    δ starts at `init − images` inside the mask, `init` being the composite with the object pasted in
    (the original's start: x+δ is the composite). Without `init` δ starts at 0, where both norms have a
    zero gradient, so it stays 0: the trivial patch. The images' device is used throughout.
    """
    low, high = bounds
    grey_level = (high - low) / GREY_LEVELS
    size_weight, range_weight, step = alpha / grey_level, beta / grey_level, lr * grey_level**2
    inside = masks.bool()[:, None].to(images.dtype)
    images = images.detach()
    delta = torch.zeros_like(images) if init is None else (init.detach() - images) * inside
    with torch.no_grad():
        reference = model(images)
    for _ in range(steps):
        delta.requires_grad_(True)
        shifted = images + delta
        loss = (
            _logit_distance(model(shifted), reference)
            - size_weight * torch.linalg.vector_norm(delta.flatten(1), dim=1)
            + range_weight * (torch.relu(shifted - high) + torch.relu(low - shifted)).flatten(1).sum(1)
        ).sum()  # images are independent: the sum's gradient is each image's own
        (gradient,) = torch.autograd.grad(loss, delta)
        delta = ((delta - step * gradient) * inside).detach()
    patched = torch.where(inside.bool(), (images + delta).clamp(low, high), images)
    with torch.no_grad():
        logits = model(patched)
    return PatchResult(
        patched=patched,
        delta=patched - images,
        logit_distance=_logit_distance(logits, reference),
        prediction_unchanged=logits.argmax(dim=1) == reference.argmax(dim=1),
    )


def select_insignificant(
    prediction_unchanged: BoolArray, logit_distance: FloatArray, max_distance: float | None = None
) -> BoolArray:
    """`[B]` bool (tensors or arrays): the functionally insignificant patches BAM's IIR may use, those that
    leave the prediction unchanged and, given `max_distance`, move the logits by less than it (the
    original kept every patch; we ask for both conditions). Arguments: a `PatchResult`'s fields."""
    if max_distance is None:
        return prediction_unchanged
    return prediction_unchanged & (logit_distance < max_distance)
