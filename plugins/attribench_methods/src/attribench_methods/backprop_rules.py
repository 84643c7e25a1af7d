"""Modified-backprop explainers: Guided Backprop and Deconvnet (Captum), which replace the backward pass of
every `nn.ReLU` module. They run on `canonical_copy(model)` so that in-place and reused ReLUs are exact."""

from __future__ import annotations

import torch
from torch import nn

from attribench_methods.common import CaptumExplainer
from attribench_methods.model_checks import UnsupportedModelError


def activation_names(model: nn.Module) -> list[str]:
    """Class names of the model's activation modules, in order of first appearance: leaf modules defined in
    an `activation`/`activations` module (torch.nn's SiLU, GELU, Sigmoid; Hugging Face's GELUActivation)."""
    names = [
        type(m).__name__
        for m in model.modules()
        if next(m.children(), None) is None
        and type(m).__module__.rpartition(".")[2] in ("activation", "activations")
    ]
    return list(dict.fromkeys(names))


class _ReLURuleExplainer(CaptumExplainer):
    """Shared by both: the rule lives on `nn.ReLU` modules, so a model without any (other activations, or a
    functional `F.relu`, which cannot be hooked) would silently give the plain gradient; refuse it instead."""

    canonical = True

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        clone = super().attribution_model(model, inputs)  # refuses TorchScript, whose ReLUs are hidden
        if not any(isinstance(m, nn.ReLU) for m in clone.modules()):
            found = activation_names(clone)
            activations = (
                f"its activation modules are {', '.join(found)}"
                if found
                else "it has no activation modules (functional F.relu cannot be hooked)"
            )
            raise UnsupportedModelError(
                f"{type(self).__name__} is defined for ReLU networks (it replaces the backward pass of "
                f"nn.ReLU modules) and this model has no nn.ReLU: {activations}; use a gradient method "
                "(gradient, ig) instead."
            )
        return clone


class GuidedBackprop(_ReLURuleExplainer):
    """Guided Backpropagation (Springenberg et al. 2015): at each ReLU only positive gradients flow back,
    and only where the forward input was positive (Captum `GuidedBackprop`)."""

    captum_class = "GuidedBackprop"


class Deconvnet(_ReLURuleExplainer):
    """DeConvNet (Zeiler & Fergus 2014): each ReLU's backward pass is a ReLU of the incoming gradient,
    whatever the forward input was (Captum `Deconvolution`)."""

    captum_class = "Deconvolution"
