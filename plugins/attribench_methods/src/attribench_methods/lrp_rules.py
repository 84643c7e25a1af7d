"""LRP rules that Captum lacks, as Captum `PropagationRule`s: α-β with signed inputs, flat, w², z^B (Deep
Taylor's bounded input rule), and relevance passed through reshapes or along the gradient.

Captum's own rules are modified-weights z-rules (R_i = a_i Σ_j w'_ij R_j / z'_j); these rules are not, so
each one replaces the layer's output in Captum's second forward pass by `output + (s − s.detach())`: the
value is unchanged, and backpropagating the relevance R of the outputs through the surrogate `s` (linear
in the layer's input, with coefficients fixed from the forward pass) gives the relevance of the inputs
itself. Formulas follow innvestigate's `relevance_rule.py` (SMERF ran innvestigate 1.0.8); 0/0 gives 0.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr._utils.lrp_rules import PropagationRule
from torch import nn


def weighted(module: nn.Module, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`module` (a Conv2d or Linear layer) applied to `u` with `weight` in place of its own, without bias."""
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(u, weight, None)
    return F.linear(u, weight)


def safe_inverse(z: torch.Tensor) -> torch.Tensor:
    """1/z, and 0 where z = 0."""
    return torch.where(z == 0, torch.zeros_like(z), 1.0 / torch.where(z == 0, torch.ones_like(z), z))


def bias_term(module: nn.Module, like: torch.Tensor) -> torch.Tensor | float:
    """The layer's bias shaped to broadcast over its output `like`, or 0."""
    bias = getattr(module, "bias", None)
    if bias is None:
        return 0.0
    return bias.detach().view(1, -1, *([1] * (like.dim() - 2)))


class SurrogateRule(PropagationRule):
    """A rule given by `surrogate(module, x, u)`: linear in `u`, such that the vector-Jacobian product of
    the outputs' relevance with it is the inputs' relevance. Weights are never modified."""

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        pass

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: torch.Tensor) -> torch.Tensor:
        (x,) = inputs  # the layer checks upstream allow single-input layers only
        s = self.surrogate(module, x.detach(), x)
        return outputs.detach() + (s - s.detach())

    @abstractmethod
    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Linear in `u` (the layer's input in the graph); `x` holds its values."""


class AlphaBetaRule(SurrogateRule):
    """α-β rule (Bach et al. 2015): R_i = Σ_j (α (x_i w_ij)⁺ / z⁺_j − β (x_i w_ij)⁻ / z⁻_j) R_j, signed
    inputs included. With `bias`, the layer's bias is added to both z⁺_j and z⁻_j, exactly as innvestigate's
    `AlphaBetaRule(bias=True)` (Alpha1Beta0Rule, Alpha2Beta1Rule) computes them; relevance is conserved for
    α − β = 1 on bias-free layers. α=1, β=0, no bias is the z⁺ rule."""

    def __init__(self, alpha: float, beta: float, *, bias: bool = True) -> None:
        self.alpha, self.beta, self.bias = alpha, beta, bias

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        w = module.weight.detach()
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)

        def part(w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
            """Σ over the (x⁺ w_a) and (x⁻ w_b) contributions, normalised by their own total."""
            z = weighted(module, x_pos, w_a) + weighted(module, x_neg, w_b)
            if self.bias:
                z = z + bias_term(module, z)
            return safe_inverse(z) * (weighted(module, x_pos * u, w_a) + weighted(module, x_neg * u, w_b))

        s = self.alpha * part(w_pos, w_neg)
        if self.beta:
            s = s - self.beta * part(w_neg, w_pos)
        return s


class FlatRule(SurrogateRule):
    """Flat rule (Lapuschkin et al. 2019): every input in output j's receptive field gets the same share,
    R_i = Σ_j R_j / #(inputs in the receptive field of j), whatever the inputs and weights (innvestigate
    `FlatRule`: weights of one, no bias; zero padding is not counted)."""

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(module.weight)
        return safe_inverse(weighted(module, torch.ones_like(x), ones)) * weighted(module, u, ones)


class WSquareRule(SurrogateRule):
    """w² rule (Montavon et al. 2017, unbounded inputs): R_i = Σ_j w_ij² / Σ_i' w_i'j² R_j (innvestigate
    `WSquareRule`, which its Deep Taylor uses for layers without a ReLU, e.g. the output layer)."""

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        squared = module.weight.detach() ** 2
        return safe_inverse(weighted(module, torch.ones_like(x), squared)) * weighted(module, u, squared)


class BoundedRule(SurrogateRule):
    """z^B rule (Montavon et al. 2017) for inputs in [low, high]: with z_ij = x_i w_ij − low w⁺_ij −
    high w⁻_ij, R_i = Σ_j z_ij / Σ_i' z_i'j R_j; no bias (innvestigate `BoundedRule`)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        w = module.weight.detach()
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        low, high = torch.full_like(x, self.low), torch.full_like(x, self.high)
        z = weighted(module, x, w) - weighted(module, low, w_pos) - weighted(module, high, w_neg)
        spread = weighted(module, x * u, w) - weighted(module, low * u, w_pos)
        return safe_inverse(z) * (spread - weighted(module, high * u, w_neg))


class GradientRule(SurrogateRule):
    """Relevance sent back along the layer's gradient: unchanged through reshapes (Flatten, Identity),
    to the winner of each max-pooling window, split evenly over an average-pooling window (what innvestigate
    does for these layers). Unlike Captum's z-rule, it also moves relevance that sits on zero activations."""

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return module.forward(u)  # not module(u): that would run this hook again
