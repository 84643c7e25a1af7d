"""SoCo's reduction of attribution maps to non-negative 2-D saliency maps in [0,1] (Li et al. 2024): what its
metrics rank and threshold, and what the Remove/Introduce modifications act on."""

from __future__ import annotations

import torch


def saliency(attributions: torch.Tensor) -> torch.Tensor:
    """`[N,C,H,W]` (or `[N,1,H,W]`) attributions -> `[N,H,W]`: |a| averaged over channels, min-max normalised
    per image and clamped to [0,1]; a constant map becomes all zeros (it ranks nothing above anything)."""
    if attributions.dim() != 4:
        raise ValueError(f"saliency expects attributions [N,C,H,W]; got shape {tuple(attributions.shape)}.")
    maps = attributions if attributions.is_floating_point() else attributions.float()
    return normalise(maps.abs().mean(1))


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map of `maps` `[N, ...]` min-max normalised over all its features and clamped to [0,1]; a
    constant map becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    scaled = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.clamp(0, 1).view_as(maps)
