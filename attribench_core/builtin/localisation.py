"""Localisation scores as pure functions of 2-D maps `[B,H,W]` and boolean masks `[B,H,W]`.

These are the ground-truth metrics of the literature: relevance mass and relevance rank accuracy
(Arras et al. 2022, CLEVR-XAI) and the pointing game (Zhang et al. 2018).
"""

from __future__ import annotations

import numpy as np
import torch

REDUCTIONS = ("positive", "pooled_positive", "absolute", "signed")


def to_map(attribution: torch.Tensor, reduction: str = "positive") -> torch.Tensor:
    """`[B,C,H,W]` -> `[B,H,W]`. The two readings of "positive relevance" differ where channels disagree in
    sign: `positive` keeps each channel's positive part, then sums; `pooled_positive` sums the channels,
    then keeps the positive part. `absolute` sums |a|, `signed` sums a."""
    if reduction == "pooled_positive":
        return attribution.sum(dim=1).clamp(min=0)
    if reduction == "positive":
        attribution = attribution.clamp(min=0)
    elif reduction == "absolute":
        attribution = attribution.abs()
    elif reduction != "signed":
        raise ValueError(f"Unknown reduction '{reduction}'; use one of {', '.join(REDUCTIONS)}.")
    return attribution.sum(dim=1)


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance inside the mask over total relevance, per sample (NaN where the total is 0)."""
    inside = (maps * masks).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    return torch.where(total != 0, inside / total, torch.full_like(total, float("nan")))


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the K highest-ranked pixels that lie in the mask, K = mask area (NaN for an empty mask).

    Ties are broken by pixel order (row-major), as a stable sort does.
    """
    flat_maps, flat_masks = maps.flatten(1), masks.flatten(1)
    area = flat_masks.sum(1)
    order = torch.sort(flat_maps, dim=1, descending=True, stable=True).indices
    ranked_in_mask = torch.gather(flat_masks, 1, order).float()
    top_k = torch.arange(flat_maps.shape[1], device=maps.device)[None, :] < area[:, None]
    hits = (ranked_in_mask * top_k).sum(1)
    return torch.where(area > 0, hits / area.clamp(min=1), torch.full_like(hits, float("nan")))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """1.0 where the maximum of the map lies in the mask dilated by `tolerance` pixels, else 0.0.

    The first maximum in row-major order is taken. NaN for an empty mask.
    """
    if tolerance > 0:
        kernel = 2 * tolerance + 1
        masks = (
            torch.nn.functional.max_pool2d(masks[:, None].float(), kernel, stride=1, padding=tolerance)[:, 0]
            > 0
        )
    peak = maps.flatten(1).argmax(1)
    hit = masks.flatten(1).gather(1, peak[:, None])[:, 0].float()
    return torch.where(masks.flatten(1).any(1), hit, torch.full_like(hit, float("nan")))


def mean_over_categories(values: np.ndarray, categories: np.ndarray) -> float:
    """The mean of each category's mean score, as Zhang et al. 2018 average the pointing game: every
    category weighs the same however many images it has."""
    return float(np.mean([values[categories == c].mean() for c in np.unique(categories)]))
