"""LRP rules: how one layer call maps the relevance of its output to the relevance of its input.

Every rule has `relevance(module, x, y, r)`: the input relevance of a call of `module` that took `x` and
gave `y`, given the output relevance `r` (what `lrp_engine` calls). The ε rule (z-rule for ε → 0) and the
pass-through rule are ours; α-β with signed inputs, flat, w², z^B (Deep Taylor's bounded input rule) and
relevance along the gradient are also Captum `PropagationRule`s: each replaces the layer's output in
Captum's second forward pass by `output + (s − s.detach())`: the value is unchanged, and backpropagating
the relevance R of the outputs through the surrogate `s` (linear in the layer's input, with coefficients
fixed from the forward pass) gives the relevance of the inputs itself; `relevance` is that same
vector-Jacobian product. Formulas follow innvestigate's `relevance_rule.py` (SMERF ran innvestigate 1.0.8);
0/0 gives 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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


class RelevanceRule(ABC):
    """Maps a layer call's output relevance to its input relevance."""

    @abstractmethod
    def relevance(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Relevance of the input `x` of the call of `module` that gave `y`, whose relevance is `r`; `y` may
        carry the call's autograd graph back to `x`."""


def input_gradient(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, upstream: torch.Tensor
) -> torch.Tensor:
    """The vector-Jacobian product `upstream` · ∂y/∂x of the call y = module(x): through the call's own graph
    where the engine kept it, else by running `module.forward` again (no hooks run)."""
    if x.requires_grad and y.grad_fn is not None:
        (grad,) = torch.autograd.grad(y, x, upstream)
        return grad
    with torch.enable_grad():
        u = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(module.forward(u), u, upstream)
    return grad


def signed_stabiliser(y: torch.Tensor, epsilon: float | torch.Tensor) -> torch.Tensor:
    """ε·sign(y), with sign(0) = +1 (as Captum's ε rule)."""
    return epsilon * torch.where(y >= 0, torch.ones_like(y), -torch.ones_like(y))


class EpsilonRule(RelevanceRule):
    """ε rule (Bach et al. 2015): R_i = (x_i − x̃_i) Σ_j w_ij R_j / (z_j + ε·sign z_j), z_j the call's
    output (bias included), w_ij its Jacobian: through pooling, BatchNorm and reshapes this is the z-rule of
    the linear map they select. `relative`: ε is `epsilon` times the root mean square of z over the layer's
    units, per sample (the LRP tutorial's 0.25·RMS(z), Montavon et al. 2019), so it is scale-free.
    `reference` x̃ (default 0) is the normalised black image at an input layer with the input normalisation
    folded in: the rule then equals the ε rule of the folded layer on [0, 1] images."""

    def __init__(
        self, epsilon: float, *, relative: bool = False, reference: torch.Tensor | None = None
    ) -> None:
        self.epsilon, self.relative, self.reference = epsilon, relative, reference

    def relevance(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        z = y.detach()
        epsilon: float | torch.Tensor = self.epsilon
        if self.relative:
            rms = z.flatten(1).square().mean(1).sqrt()
            epsilon = self.epsilon * rms.view(-1, *([1] * (z.dim() - 1)))
        rate = input_gradient(module, x, y, r / (z + signed_stabiliser(z, epsilon)))
        return (x.detach() if self.reference is None else x.detach() - self.reference) * rate


class PassRule(RelevanceRule):
    """Relevance passed on unchanged, element by element (ReLU, Dropout in eval mode, input normalisation):
    also on inactive units, as innvestigate and Captum pass it through activations. For SiLU and GELU this
    is the identity rule of AttnLRP (Achtibat et al. 2024)."""

    def relevance(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return r


class GateRule(RelevanceRule):
    """No relevance into a multiplicative gate: in y = x · σ(g) the signal x takes all of y's relevance and
    the gate's branch none (signal-take-all, Arras et al. 2017, for the gates of LSTMs; here the Sigmoid of
    a squeeze-excitation block)."""

    def relevance(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class SurrogateRule(PropagationRule, RelevanceRule):
    """A rule given by `surrogate(module, x, u)`: linear in `u`, such that the vector-Jacobian product of
    the outputs' relevance with it is the inputs' relevance. Weights are never modified."""

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        pass

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: torch.Tensor) -> torch.Tensor:
        (x,) = inputs  # the layer checks upstream allow single-input layers only
        s = self.surrogate(module, x.detach(), x)
        return outputs.detach() + (s - s.detach())

    def relevance(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            u = x.detach().requires_grad_(True)
            (got,) = torch.autograd.grad(self.surrogate(module, x.detach(), u), u, r)
        return got

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
    """z^B rule (Montavon et al. 2017) for inputs in [low, high]: with z_ij = x_i w_ij − low_i w⁺_ij −
    high_i w⁻_ij, R_i = Σ_j z_ij / Σ_i' z_i'j R_j; no bias (innvestigate `BoundedRule`). The bounds are
    numbers or tensors that broadcast over the input (per-channel bounds of a normalised input)."""

    def __init__(self, low: float | torch.Tensor, high: float | torch.Tensor) -> None:
        self.low, self.high = low, high

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        w = module.weight.detach()
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        low, high = torch.zeros_like(x) + self.low, torch.zeros_like(x) + self.high
        z = weighted(module, x, w) - weighted(module, low, w_pos) - weighted(module, high, w_neg)
        spread = weighted(module, x * u, w) - weighted(module, low * u, w_pos)
        return safe_inverse(z) * (spread - weighted(module, high * u, w_neg))


class GradientRule(SurrogateRule):
    """Relevance sent back along the layer's gradient: unchanged through reshapes (Flatten, Identity),
    to the winner of each max-pooling window, split evenly over an average-pooling window (what innvestigate
    does for these layers). Unlike Captum's z-rule, it also moves relevance that sits on zero activations."""

    def surrogate(self, module: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return module.forward(u)  # not module(u): that would run this hook again
