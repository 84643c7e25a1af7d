"""The example explainer: the magnitude of the input gradient, box-filtered by `window` pixels."""

from typing import ClassVar

import torch

from attribench_core import Explainer, Param


class GradientMagnitude(Explainer):
    """|d logit_target / d input|, averaged over a `window` x `window` neighbourhood (1: no smoothing)."""

    parameters: ClassVar = (Param("window", 1, "side of the box filter, odd, in pixels", int),)

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        window = self.params["window"]
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number; got {window}")
        x = inputs.detach().clone().requires_grad_(True)
        logits = model(x).gather(1, targets[:, None]).sum()
        grad = torch.autograd.grad(logits, x)[0].abs()
        return torch.nn.functional.avg_pool2d(
            grad, window, stride=1, padding=window // 2, count_include_pad=False
        )
