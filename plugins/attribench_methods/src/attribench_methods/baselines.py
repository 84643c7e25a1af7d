"""Model-independent baselines that any real method should beat: uniform noise and a Sobel edge map."""

from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F

from attribench_core import Explainer, Param
from attribench_methods.common import generator_or_default


class RandomAttribution(Explainer):
    """Random baseline: U[0,1) per pixel, `[B,1,H,W]`, drawn on the CPU from the run's generator."""

    channel_less = True

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        size = (inputs.shape[0], 1, *inputs.shape[2:])
        return torch.rand(size, generator=generator_or_default(self.generator)).to(inputs.device)


def sobel_x_kernel(size: int) -> torch.Tensor:
    """OpenCV's Sobel kernel for d/dx (`cv2.getDerivKernels(1, 0, size)`): binomial smoothing along y times
    a binomial-smoothed central difference along x; size 5 gives [1,4,6,4,1]ᵀ·[-1,-2,0,2,1]."""
    smooth = torch.tensor([comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    inner = torch.tensor([comb(size - 3, i) for i in range(size - 2)], dtype=torch.float64)
    deriv = torch.zeros(size, dtype=torch.float64)
    deriv[2:] += inner
    deriv[:-2] -= inner
    return smooth[:, None] * deriv[None, :]


class SobelEdge(Explainer):
    """Edge-detection baseline (SMERF): the signed Sobel x-derivative of the channel-mean image, `[B,1,H,W]`.

    Like `cv2.Sobel(img, dx=1, dy=0, ksize)` with OpenCV's default reflect-101 border; no absolute value is
    taken (SMERF min-max normalises the signed map). Since the filter is linear, this is the channel mean of
    the per-channel Sobel maps that SMERF computed.
    """

    channel_less = True
    parameters = (Param("kernel_size", 5, "Sobel aperture (SMERF: 5)", int, (3, 5, 7)),)

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        size = self.params["kernel_size"]
        dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
        gray = inputs.detach().to(dtype).mean(1, keepdim=True)
        padded = F.pad(gray, (size // 2,) * 4, mode="reflect")
        return F.conv2d(padded, sobel_x_kernel(size).to(inputs.device, dtype)[None, None])
