"""Perturbation explainers: Occlusion (Captum)."""

from __future__ import annotations

from typing import Any

import torch

from attribench_core import Param, ParameterError
from attribench_methods.common import CaptumExplainer
from attribench_methods.gradients import INTERNAL_BATCH_SIZE


class Occlusion(CaptumExplainer):
    """Occlusion (Zeiler & Fergus 2014): a `window`×`window` patch over all channels, slid by `stride`, is
    set to `baseline`; each pixel gets the mean drop of the target logit f(x) − f(x occluded) over the
    windows covering it, the same value on every channel (Captum `Occlusion`).

    Defaults (ours; no seed benchmark ran occlusion): window 8, stride 4 (≤ window, so every pixel is
    covered; Captum clips the last window at the border), baseline 0. One image costs
    (⌈(H − window) / stride⌉ + 1)·(⌈(W − window) / stride⌉ + 1) forward passes: 49 at 32×32, 3025 at 224×224.
    `internal_batch_size` bounds the images per forward pass (Captum's `perturbations_per_eval` =
    internal_batch_size // B, at least 1).
    """

    captum_class = "Occlusion"
    parameters = (
        Param("window", 8, "side of the square occluding patch, in pixels (ours)", int, minimum=1),
        Param("stride", 4, "step between patch positions, in pixels (ours)", int, minimum=1),
        Param("baseline", 0.0, "value the patch is set to, in the model's input space", float),
        INTERNAL_BATCH_SIZE,
    )

    def check_params(self) -> None:
        window, stride = self.params["window"], self.params["stride"]
        if stride > window:
            raise ParameterError(f"Parameter 'stride' ({stride}) must not exceed 'window' ({window}).")

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        window = self.params["window"]
        if inputs.dim() == 4 and window > min(inputs.shape[2:]):
            size = tuple(inputs.shape[2:])
            raise ValueError(f"Parameter 'window' ({window}) exceeds the image size {size}.")
        self._shape = tuple(inputs.shape)
        return super().explain(model, inputs, targets)

    def attribute_kwargs(self) -> dict[str, Any]:
        batch, channels = self._shape[:2]
        window, stride = self.params["window"], self.params["stride"]
        return {
            "sliding_window_shapes": (channels, window, window),
            "strides": (channels, stride, stride),
            "baselines": self.params["baseline"],
            "perturbations_per_eval": max(1, self.params["internal_batch_size"] // batch),
        }
