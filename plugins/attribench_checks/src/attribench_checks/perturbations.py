"""The variants the robustness and invariance checks ask the runner to explain: noise in an L∞ ball, a
constant shift of the input, and the model whose first layer absorbs that shift.

Each is a frozen dataclass (its fields key the store), so a second metric asking for an equal variant
reuses the stored maps; randomness comes only from the generators the runner passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attribench_core import Alteration, Normalize, Perturbation, UsageProblem

WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class UniformNoise(Perturbation):
    """x + U[−radius, radius] per value: one point drawn uniformly in the L∞ ball of `radius` around x
    (Yeh et al. 2019). Draw `draw` of N is its own variant, so each is stored and reused on its own."""

    radius: float
    draw: int = 0

    def perturb(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        unit = torch.empty(images.shape)  # filled in place, image by image: no stacked copy
        for row, generator in zip(unit, generators, strict=True):
            torch.rand(row.shape, generator=generator, out=row)
        return images + unit.mul_(2).sub_(1).mul_(self.radius).to(images.device, images.dtype)


@dataclass(frozen=True)
class ConstantShift(Perturbation):
    """x + shift everywhere (Kindermans et al. 2017's mean shift of the input)."""

    shift: float

    def perturb(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return images + self.shift


@dataclass(frozen=True)
class ShiftAbsorbed(Alteration):
    """The model whose first weighted layer (Conv2d or Linear) absorbs a shift c of the input: its bias
    becomes b − W·c, so that f'(x + c) = f(x) (Kindermans et al. 2017). A convolution's zero padding
    becomes padding with c, else the pair would differ at the image borders; a `Normalize` before the layer
    turns c into c/std per channel. Deterministic: the generator is unused."""

    shift: float

    def alter(self, module: nn.Module, generator: torch.Generator) -> nn.Module:
        name, layer, scale = first_weighted_layer(module)
        shift = self.shift * scale.to(layer.weight.device, layer.weight.dtype)
        absorbed = (
            ShiftPaddedConv2d(layer, shift) if isinstance(layer, nn.Conv2d) else _shifted_linear(layer, shift)
        )
        if not name:
            return absorbed
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, absorbed)
        return module


def first_weighted_layer(module: nn.Module) -> tuple[str, nn.Conv2d | nn.Linear, torch.Tensor]:
    """(name, layer, 1/std per input channel) of the model's first module with weights, in registration
    order, and of the `Normalize` before it (ones if none); refused unless it is a Conv2d or a Linear."""
    scale = torch.ones(1)
    for name, layer in module.named_modules():
        if isinstance(layer, Normalize):
            scale = 1.0 / layer.std.detach().cpu()
        elif isinstance(getattr(layer, "weight", None), torch.Tensor):
            if not isinstance(layer, WEIGHTED_LAYERS):
                raise UsageProblem(
                    f"Input invariance needs a model whose first weighted layer is a Conv2d or a Linear;"
                    f" its first is {type(layer).__name__} '{name}': choose another model."
                )
            return name, layer, scale
    raise UsageProblem("Input invariance needs a model with a Conv2d or Linear layer; this one has none.")


class ShiftPaddedConv2d(nn.Conv2d):
    """A copy of `conv` for inputs shifted by `shift` (per input channel, or one value): bias b − W·shift,
    and its zero padding replaced by padding with `shift`, so that its output on x + shift equals conv's on
    x, borders included."""

    def __init__(self, conv: nn.Conv2d, shift: torch.Tensor):
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=0 if conv.padding_mode == "zeros" else conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        self.border = _zero_padding(conv)
        shift = shift.expand(conv.in_channels) if shift.numel() == 1 else shift
        self.register_buffer("fill", shift.reshape(1, -1, 1, 1).clone())
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(self.bias)
            self.bias.copy_(bias - _conv_of_constant(conv, shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.border):
            ones = F.pad(torch.zeros_like(x[:1, :1]), self.border, value=1.0)
            x = F.pad(x, self.border) + self.fill * ones
        return super().forward(x)


def _zero_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """`F.pad` amounts (left, right, top, bottom) of a convolution's zero padding; none for other modes."""
    if conv.padding_mode != "zeros" or conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        (top, left), (bottom, right) = [t // 2 for t in totals], [t - t // 2 for t in totals]
        return (left, right, top, bottom)
    height, width = conv.padding
    return (width, width, height, height)


def _conv_of_constant(conv: nn.Conv2d, shift: torch.Tensor) -> torch.Tensor:
    """`[out]` W·shift: the convolution (no bias) of a constant image, one value per output channel."""
    extent = [d * (k - 1) + 1 for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    constant = shift.reshape(1, -1, 1, 1).expand(1, conv.in_channels, *extent)
    return F.conv2d(constant, conv.weight, None, 1, 0, conv.dilation, conv.groups).reshape(-1)


def _shifted_linear(layer: nn.Linear, shift: torch.Tensor) -> nn.Linear:
    """A copy of `layer` with bias b − W·shift, the flattened input's features taken channel by channel."""
    shifted = nn.Linear(
        layer.in_features, layer.out_features, device=layer.weight.device, dtype=layer.weight.dtype
    )
    per_feature = shift.repeat_interleave(layer.in_features // shift.numel())
    with torch.no_grad():
        shifted.weight.copy_(layer.weight)
        bias = layer.bias if layer.bias is not None else torch.zeros_like(shifted.bias)
        shifted.bias.copy_(bias - layer.weight @ per_feature)
    return shifted
