"""The example explainer: the magnitude of the input gradient, box-filtered by `window` pixels."""

from typing import ClassVar

import torch

from attribench_core import Explainer, Param, ParameterError


class GradientMagnitude(Explainer):
    """|d logit_target / d input|, averaged over a `window` x `window` neighbourhood (1: no smoothing)."""

    # a range is declared on the Param; checked when the command is read (exit 2)
    parameters: ClassVar = (Param("window", 1, "side of the box filter, odd, in pixels", int, minimum=1),)

    def check_params(self) -> None:
        # what a Param cannot declare, checked when the explainer is made (the CLI: exit 2)
        if self.params["window"] % 2 == 0:
            raise ParameterError(f"Parameter 'window' must be odd; got {self.params['window']}.")

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        window = self.params["window"]
        x = inputs.detach().clone().requires_grad_(True)
        logits = model(x).gather(1, targets[:, None]).sum()
        grad = torch.autograd.grad(logits, x)[0].abs()
        return torch.nn.functional.avg_pool2d(
            grad, window, stride=1, padding=window // 2, count_include_pad=False
        )
