"""Input normalisation as a first module that every method can see and treat.

Explainers always receive images in [0, 1] (`ModelInfo.input_range`). A network trained on normalised
inputs (ImageNet's mean/std) is wrapped as `Normalized(Normalize(mean, std), network)`, so that the
normalisation is a known, elementwise affine module rather than arithmetic hidden in `forward`: gradient
methods differentiate through it, and relevance-propagation methods apply their input-layer rule in [0, 1]
with the normalisation folded in (`Normalize.bounds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """`(x - mean) / std` per channel; `mean` and `std` are buffers shaped `[C]`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one value per channel; got {list(mean)} and {list(std)}.")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive; got {list(std)}.")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
        self.register_buffer("std", torch.tensor([float(s) for s in std]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def bounds(self, low: float = 0.0, high: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel `[C]` lowest and highest normalised values of inputs in [low, high]."""
        return (low - self.mean) / self.std, (high - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Normalized(nn.Module):
    """`network(normalize(x))`: a network for normalised inputs, taking images in [0, 1]."""

    def __init__(self, normalize: Normalize, network: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))


def input_normalization(model: nn.Module) -> Normalize | None:
    """The model's `Normalize` when it is a `Normalized` wrapper, else None."""
    return model.normalize if isinstance(model, Normalized) else None
