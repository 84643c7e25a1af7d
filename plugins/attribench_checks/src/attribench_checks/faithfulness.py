"""The faithfulness checks' maths as pure functions on batches, one row per sample: the random
perturbations of an image, what a map predicts of each (its attribution sum), and the per-sample score of
those predictions against the model's output drops.

Infidelity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations"):
INFD = E_I[(Iᵀ Φ(x) − (f_y(x) − f_y(x − I)))²]. Faithfulness correlation (Bhatt et al. 2020, "Evaluating
and Aggregating Feature-based Model Explanations"): over random pixel subsets S, the Pearson correlation of
Σ_{i∈S} Φ(x)_i and f_y(x) − f_y(x with x_S set to a baseline).

Draws come from one numpy generator per image and use only `random` and `standard_normal`, which give the
same numbers whether drawn at once or in pieces: an image's perturbations do not depend on how many are
drawn per forward pass, nor on the batch it is in.
"""

from __future__ import annotations

import numpy as np
import torch

BASELINES = ("zero", "mean", "min")


def gaussian_noise(rng: np.random.Generator, count: int, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """`[count, *shape]` float32 perturbations I ~ N(0, σ²) per input element (Yeh et al.'s Gaussian
    perturbation, under which a smoothed gradient is the optimal explanation)."""
    return (sigma * rng.standard_normal((count, *shape))).astype(np.float32)


def square_masks(rng: np.random.Generator, count: int, height: int, width: int, side: int) -> np.ndarray:
    """`[count, H, W]` boolean masks of one `side`×`side` square each, its top-left corner uniform over the
    positions where it fits (Yeh et al.'s square removal)."""
    corners = rng.random((count, 2)) * [height - side + 1, width - side + 1]
    top, left = corners.astype(np.int64).T
    rows, cols = np.arange(height), np.arange(width)
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def subset_masks(rng: np.random.Generator, count: int, height: int, width: int, size: int) -> np.ndarray:
    """`[count, H, W]` boolean masks of `size` pixels each, drawn uniformly without replacement (the
    `size` smallest of one uniform number per pixel)."""
    keys = rng.random((count, height * width))
    chosen = np.argpartition(keys, size - 1, axis=1)[:, :size]
    masks = np.zeros((count, height * width), dtype=bool)
    np.put_along_axis(masks, chosen, True, axis=1)
    return masks.reshape(count, height, width)


def baseline_values(images: torch.Tensor, kind: str) -> torch.Tensor:
    """The value removed input elements take, `[B, C|1, 1, 1]`: `zero`, each channel's `mean` over the
    image, or the image's `min` over all channels (what Quantus calls "black")."""
    if kind == "zero":
        return torch.zeros_like(images[:, :1, :1, :1])
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True)
    if kind == "min":
        return images.flatten(1).amin(dim=1)[:, None, None, None]
    raise ValueError(f"Unknown baseline '{kind}'; use one of {', '.join(BASELINES)}.")


def removed(images: torch.Tensor, masks: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """`[B, N, C, H, W]`: each image with what each of its masks covers set to its baseline
    `[B, C|1, 1, 1]`; masks `[B, N, H, W]` cover pixels (all channels), `[B, N, C, H, W]` input
    elements."""
    if masks.dim() == 4:
        masks = masks[:, :, None]
    return torch.where(masks, baseline[:, None], images[:, None])


def attribution_sums(maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`[B, N]` Σ weights ⊙ Φ per perturbation: `maps` `[B, C, H, W]`, `weights` `[B, N, C|1, H, W]`.
    A one-channel map stands for every input channel (broadcast); a pixel mask (one channel) sums the map
    over its channels at those pixels."""
    return (weights * maps[:, None]).flatten(2).sum(dim=2)


def optimal_scale(predicted: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
    """`[B]` β minimising E[(β·IᵀΦ − drop)²] per row: E[IᵀΦ·drop] / E[(IᵀΦ)²]; 0 where the map predicts 0
    for every perturbation (then every β gives the same error)."""
    energy = (predicted * predicted).sum(dim=1)
    covariance = (predicted * drops).sum(dim=1)
    return torch.where(energy > 0, covariance / energy.clamp_min(torch.finfo(energy.dtype).tiny), 0.0)


def infidelity(predicted: torch.Tensor, drops: torch.Tensor, *, scaled: bool) -> torch.Tensor:
    """`[B]` mean over perturbations of (IᵀΦ − (f_y(x) − f_y(x − I)))², from `predicted` IᵀΦ and the
    output `drops`, both `[B, N]`; `scaled`: Φ first multiplied by its `optimal_scale`, which makes the
    score blind to the map's scale."""
    if scaled:
        predicted = predicted * optimal_scale(predicted, drops)[:, None]
    return ((predicted - drops) ** 2).mean(dim=1)


def constant_rows(values: torch.Tensor, rtol: float = 1e-5) -> torch.Tensor:
    """`[B]` True where a row of `values` `[B, N]` is constant up to rounding: its spread is at most `rtol`
    of its largest magnitude (sums of equal values over different subsets may differ in the last bits)."""
    spread = values.amax(dim=1) - values.amin(dim=1)
    return spread <= rtol * values.abs().amax(dim=1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`[B]` Pearson correlation of the rows of `a` and `b` `[B, N]`; NaN where either row is constant
    (`constant_rows`): the correlation is undefined there."""
    centred_a = a - a.mean(dim=1, keepdim=True)
    centred_b = b - b.mean(dim=1, keepdim=True)
    norms = centred_a.norm(dim=1) * centred_b.norm(dim=1)
    correlation = (centred_a * centred_b).sum(dim=1) / norms
    undefined = constant_rows(a) | constant_rows(b)
    return torch.where(undefined, torch.nan, correlation.clamp(-1.0, 1.0))
