"""Modified-backprop explainers: Guided Backprop and Deconvnet (Captum), which replace the backward pass of
every `nn.ReLU` module. They run on `canonical_copy(model)` so that in-place and reused ReLUs are exact."""

from __future__ import annotations

import torch
from torch import nn

from attribench_methods.common import CaptumExplainer
from attribench_methods.model_checks import UnsupportedModelError


class _ReLURuleExplainer(CaptumExplainer):
    """Shared by both: the rule lives on `nn.ReLU` modules, so a model without any (a functional `F.relu`
    cannot be hooked) would silently give the plain gradient; refuse it instead."""

    canonical = True

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        clone = super().attribution_model(model, inputs)  # refuses TorchScript, whose ReLUs are hidden
        if not any(isinstance(m, nn.ReLU) for m in clone.modules()):
            raise UnsupportedModelError(
                f"{type(self).__name__} overrides the backward pass of nn.ReLU modules and the model has "
                "none (functional F.relu cannot be hooked); build the model with nn.ReLU modules."
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
