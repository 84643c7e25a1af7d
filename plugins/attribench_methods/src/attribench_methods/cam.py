"""Grad-CAM (Selvaraju et al. 2017), computed by Captum's `LayerGradCam` on the model's CAM layer, and
Guided Grad-CAM (Guided Backprop × Grad-CAM)."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from attribench_core.explainer import Explainer
from attribench_core.model import cam_layer
from attribench_methods.backprop_rules import GuidedBackprop
from attribench_methods.common import checked_batch, quiet_captum
from attribench_methods.model_checks import PerCall, UnsupportedModelError, canonical_copy


class GradCAM(Explainer):
    """Grad-CAM: the CAM layer's activations weighted by their spatially averaged gradients of the target
    logit, summed over channels, ReLU'd, then bilinearly upsampled to the input's H×W; `[B,1,H,W]`, ≥ 0.

    The layer is `cam_layer(model)`: the model's declared `ModelInfo.cam_layer`, else its last Conv2d.
    Not divided by its maximum (the benchmarks normalise).
    """

    channel_less = True

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        layer = cam_layer(model)
        path = next(name for name, m in model.named_modules() if m is layer)
        clone = canonical_copy(model, inputs, method="GradCAM")
        hooked = clone.get_submodule(path)
        if isinstance(hooked, PerCall):
            raise UnsupportedModelError(
                f"GradCAM: the CAM layer '{path}' runs {len(hooked.copies)} times per forward pass, so its "
                "activation map is ambiguous; declare a layer that runs once (ModelInfo.cam_layer)."
            )
        with quiet_captum():
            cam = LayerGradCam(clone, hooked).attribute(inputs, target=targets, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), interpolate_mode="bilinear")


class GuidedGradCAM(Explainer):
    """Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map,
    elementwise, `[B,C,H,W]`; composed of this plugin's `GuidedBackprop` and `GradCAM` (bilinear upsampling,
    as in the paper; Captum's `GuidedGradCam` defaults to nearest) and refusing what they refuse."""

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cam = GradCAM().explain(model, inputs, targets)
        return GuidedBackprop().explain(model, inputs, targets) * cam
