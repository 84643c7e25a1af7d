"""Grad-CAM (Selvaraju et al. 2017), computed by Captum's `LayerGradCam` on the model's CAM layer, and
Guided Grad-CAM (Guided Backprop × Grad-CAM)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from captum.attr import LayerAttribution, LayerGradCam

from attribench_core import Explainer, cam_layer_path
from attribench_methods.backprop_rules import GuidedBackprop
from attribench_methods.common import checked_batch, quiet_captum
from attribench_methods.model_checks import UnsupportedModelError, weight_sharing_copy


class GradCAM(Explainer):
    """Grad-CAM: the CAM layer's activations weighted by their spatially averaged gradients of the target
    logit, summed over channels, ReLU'd, then bilinearly upsampled to the input's H×W; `[B,1,H,W]`, ≥ 0.

    The layer is `cam_layer_path(model)`: the model's declared `ModelInfo.cam_layer`, else its last
    convolution that is not a patch embedding. A layer declared as `NAME:tokens` (a transformer block) has
    its output tokens read as a feature map (`token_grad_cam`). Not divided by its maximum (the benchmarks
    normalise).
    """

    channel_less = True

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        path, tokens = cam_layer_path(model, method="GradCAM")
        clone = weight_sharing_copy(model, method="GradCAM")
        hooked = clone.get_submodule(path)
        with counted_calls(hooked) as calls:  # the one forward pass below
            if tokens:
                cam = token_grad_cam(clone, hooked, path, inputs, targets)
            else:
                with quiet_captum():
                    cam = LayerGradCam(clone, hooked).attribute(
                        inputs, target=targets, relu_attributions=True
                    )
        if len(calls) > 1:
            raise UnsupportedModelError(
                f"GradCAM: the CAM layer '{path}' runs {len(calls)} times per forward pass, so its "
                "activation map is ambiguous; declare a layer that runs once (ModelInfo.cam_layer)."
            )
        return LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), interpolate_mode="bilinear")


@contextmanager
def counted_calls(module: torch.nn.Module) -> Iterator[list[None]]:
    """A list that grows by one at every call of `module` inside the block (its hook is removed on exit)."""
    calls: list[None] = []
    handle = module.register_forward_pre_hook(lambda *_: calls.append(None))
    try:
        yield calls
    finally:
        handle.remove()


def token_grad_cam(
    model: torch.nn.Module, layer: torch.nn.Module, path: str, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM `[B,1,h,w]` on a transformer block whose output is `[B, 1+h*w, D]`: the class token dropped,
    the h×w patch tokens (row-major, h/w as the input's aspect) read as a map `[B,D,h,w]`, as
    pytorch-grad-cam's `reshape_transform` does for ViTs; then the same weighting as Captum's LayerGradCam."""
    captured: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: object, output: object) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(keep)
    try:
        logits = model(inputs.requires_grad_(True))
    finally:
        handle.remove()
    if not captured:
        raise UnsupportedModelError(f"GradCAM: the CAM layer '{path}' does not run in the forward pass.")
    (gradients,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), captured[0])
    activations, gradients = (_token_map(t, path, inputs.shape[2:]) for t in (captured[0], gradients))
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(dim=1, keepdim=True)).detach()


def _token_map(tokens: torch.Tensor, path: str, size: tuple[int, ...]) -> torch.Tensor:
    """`[B, 1+h*w, D]` -> `[B, D, h, w]` with h/w = H/W of `size`, or a refusal naming the layer."""
    patches = tokens.shape[1] - 1 if tokens.dim() == 3 else 0
    rows = round((patches * size[0] / size[1]) ** 0.5)
    if patches < 1 or rows * (patches // max(rows, 1)) != patches:
        raise UnsupportedModelError(
            f"GradCAM: '{path}:tokens' needs a layer whose output is [B, 1+h*w, D] with h/w as the image's "
            f"H/W; it gives {list(tokens.shape)}."
        )
    batch, _, dim = tokens.shape
    return tokens[:, 1:].reshape(batch, rows, patches // rows, dim).permute(0, 3, 1, 2)


class GuidedGradCAM(Explainer):
    """Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map,
    elementwise, `[B,C,H,W]`; composed of this plugin's `GuidedBackprop` and `GradCAM` (bilinear upsampling,
    as in the paper; Captum's `GuidedGradCam` defaults to nearest) and refusing what they refuse."""

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cam = GradCAM().explain(model, inputs, targets)
        return GuidedBackprop().explain(model, inputs, targets) * cam
