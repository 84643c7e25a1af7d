"""Relevance-propagation explainers: DeepLIFT (Rescale rule) and LRP-ε, both by Captum on
`canonical_copy(model)` (Captum's LRP leaves `rule`/`activations` attributes on the layers it touches)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import nn

from attribench_core.params import Param
from attribench_methods.common import CaptumExplainer
from attribench_methods.model_checks import UnsupportedModelError

# Rescale multipliers must add up to f(x) − f(0); a larger (relative) gap comes from Captum's max-pooling
# rule, which does not conserve exactly, or from non-linearities outside modules (F.relu, torch.max).
DEEPLIFT_DELTA_TOLERANCE = 1e-3

# Layers the ε rule applies to, layers propagated with the plain z-rule (ε ≈ 0: they are parameter-free or
# per-channel affine, and an ε there would only absorb relevance), and activations relevance passes through.
LRP_EPSILON_LAYERS = (nn.Conv2d, nn.Linear)
LRP_Z_LAYERS = (
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm2d,
    nn.Flatten,
    nn.Identity,
)
LRP_PASS_THROUGH = (nn.ReLU, nn.Dropout)
Z_RULE_EPSILON = 1e-9


class DeepLift(CaptumExplainer):
    """DeepLIFT (Shrikumar et al. 2017), Rescale rule, zero (black) reference (Captum `DeepLift`).

    Attributions sum to f(x) − f(0) per sample; a larger gap is reported once per explainer as a
    RuntimeWarning: Captum's max-pooling rule does not conserve exactly (gaps of about 0.1 % of the logit
    on `core.toy_cnn`), and non-linearities outside `nn` modules are treated as linear.
    """

    captum_class = "DeepLift"
    canonical = True

    def attribute_kwargs(self) -> dict[str, Any]:
        return {"baselines": 0.0, "return_convergence_delta": True}

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        attributions, delta = super().explain(model, inputs, targets)
        difference = attributions.flatten(1).sum(1) - delta  # = f(x) − f(0)
        bad = delta.abs() > DEEPLIFT_DELTA_TOLERANCE * difference.abs().clamp(min=1.0)
        if bool(bad.any()) and not getattr(self, "_warned", False):
            self._warned = True
            warnings.warn(
                f"DeepLift: attributions miss f(x) − f(0) by up to {delta.abs().max().item():.3g} on "
                f"{int(bad.sum())} of {len(bad)} samples; Captum's max-pooling rule does not conserve "
                "exactly, and non-linearities outside nn modules (F.relu, torch.max) are treated as linear.",
                RuntimeWarning,
                stacklevel=2,
            )
        return attributions


def attach_lrp_rules(model: nn.Module, epsilon: float) -> None:
    """Give every layer of `model` (a canonical copy) its rule, or raise naming the first module that LRP
    cannot propagate through: an unknown layer type, a container that uses parameters of its own, or a
    model that is one single module (Captum only looks at the layers inside)."""
    known = ", ".join(t.__name__ for t in (*LRP_EPSILON_LAYERS, *LRP_Z_LAYERS, *LRP_PASS_THROUGH))
    for path, module in model.named_modules():
        where = f"{'module ' + repr(path) if path else 'the model'} ({type(module).__name__})"
        if next(module.children(), None) is not None:
            own = [name for name, _ in module.named_parameters(recurse=False)]
            if own:
                raise UnsupportedModelError(
                    f"LRPEpsilon: {where} uses its own parameters {own} outside of layers; LRP can only "
                    "propagate through layer modules."
                )
        elif module is model:
            raise UnsupportedModelError(f"LRPEpsilon: {where} has no layer modules to propagate through.")
        elif isinstance(module, LRP_EPSILON_LAYERS):
            module.rule = EpsilonRule(epsilon)
        elif isinstance(module, LRP_Z_LAYERS):
            module.rule = EpsilonRule(Z_RULE_EPSILON)
        elif type(module) not in LRP_PASS_THROUGH:
            raise UnsupportedModelError(f"LRPEpsilon: {where} has no LRP rule; supported layers: {known}.")


class LRPEpsilon(CaptumExplainer):
    """LRP-ε (Bach et al. 2015): relevance R_j = Σ_k a_j w_jk R_k / (z_k + ε·sign(z_k)), starting from the
    target logit (Captum `LRP`).

    ε applies to Conv2d and Linear layers (SMERF: ε = 1); pooling, BatchNorm2d, Flatten and Identity use
    the z-rule; ReLU and Dropout pass relevance through. Other layer types raise an error naming the layer.
    Functional operations in `forward` (residual additions, F.relu) are invisible to the rules.
    """

    captum_class = "LRP"
    canonical = True
    parameters = (Param("epsilon", 1.0, "stabiliser in the Conv2d/Linear denominators (SMERF: 1)", float),)

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        if self.params["epsilon"] <= 0:
            raise ValueError(f"Parameter 'epsilon' must be positive; got {self.params['epsilon']}.")
        clone = super().attribution_model(model, inputs)
        attach_lrp_rules(clone, self.params["epsilon"])
        return clone
