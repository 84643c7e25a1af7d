"""Noisy linear imputation (ROAD, Rong et al. 2022): removed pixels become the weighted average of their
8 neighbours (1/6 edge, 1/12 diagonal, renormalised over the neighbours inside the image), solved jointly
for all removed pixels of an image, one system shared by the channels, plus Gaussian noise.

For removed pixels i the system is  W_i·x_i − Σ_j w_ij·x_j = 0,  where the sum runs over i's neighbours
(removed ones unknown, kept ones known) and W_i = Σ_j w_ij over the neighbours inside the image. Moving
the kept neighbours to the right gives A·u = b with A = (W − K) restricted to the removed pixels, K the
3×3 stencil: a weighted graph Laplacian plus the couplings to kept pixels, symmetric and positive
definite whenever every connected group of removed pixels touches a kept one.

- `reference_impute`: the exact path, one dense float64 solve per image (small images; tests).
- `impute`: the fast path for a whole batch at once, on the images' device: conjugate gradients in which
  A is applied as a 3×3 convolution, optionally warm-started (e.g. from the previous removal ratio).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EDGE, DIAGONAL = 1 / 6, 1 / 12
NOISE = 0.01  # ROAD's default noise standard deviation


def stencil(dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 3×3 neighbour weights (centre 0)."""
    return torch.tensor(
        [[DIAGONAL, EDGE, DIAGONAL], [EDGE, 0.0, EDGE], [DIAGONAL, EDGE, DIAGONAL]],
        dtype=dtype,
        device=device,
    )


def _neighbour_sum(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Σ_j w_ij·x_j over the in-image neighbours of every pixel of `x` `[N,1,H,W]` (zero padding)."""
    return F.conv2d(x, kernel.view(1, 1, 3, 3), padding=1)


def impute(
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    noise: float = NOISE,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> torch.Tensor:
    """`images` `[B,C,H,W]` with the pixels where `masks` `[B,H,W]` is True replaced by their noisy linear
    imputation; the other pixels are returned unchanged.

    Conjugate gradients on every (image, channel) system at once, until each residual is below `tol`
    times its right-hand side (or `max_iter` steps); `init` (e.g. the previous step's imputed images)
    warm-starts it. Noise: `noise`·N(0,1) per imputed pixel and channel, from `generator` (on the CPU,
    then moved), so that the same generator gives the same images on every device.
    """
    b, c, h, w = images.shape
    dtype = images.dtype
    kernel = stencil(dtype, images.device)
    removed = masks.bool()[:, None].expand(b, c, h, w).reshape(b * c, 1, h, w)
    x = images.reshape(b * c, 1, h, w)
    inside = removed.to(dtype)
    weight = _neighbour_sum(torch.ones(1, 1, h, w, dtype=dtype, device=images.device), kernel)

    def apply_a(u: torch.Tensor) -> torch.Tensor:
        return inside * (weight * u - _neighbour_sum(u, kernel))

    rhs = inside * _neighbour_sum(x * (1 - inside), kernel)
    u = inside * (init.reshape(b * c, 1, h, w) if init is not None else x)
    r = rhs - apply_a(u)
    p = r.clone()
    rr = (r * r).sum(dim=(1, 2, 3))
    limit = (tol**2) * (rhs * rhs).sum(dim=(1, 2, 3)).clamp(min=torch.finfo(dtype).tiny)
    for _ in range(max_iter):
        if bool((rr <= limit).all()):
            break
        ap = apply_a(p)
        curvature = (p * ap).sum(dim=(1, 2, 3))
        alpha = torch.where(curvature > 0, rr / curvature.clamp(min=torch.finfo(dtype).tiny), 0.0)
        u = u + alpha[:, None, None, None] * p
        r = r - alpha[:, None, None, None] * ap
        rr_next = (r * r).sum(dim=(1, 2, 3))
        beta = torch.where(rr > 0, rr_next / rr.clamp(min=torch.finfo(dtype).tiny), 0.0)
        p = r + beta[:, None, None, None] * p
        rr = rr_next
    filled = torch.where(removed, u, x)
    if noise > 0:
        draws = torch.randn(filled.shape, generator=generator, dtype=dtype).to(images.device)
        filled = filled + noise * draws * inside
    return filled.reshape(b, c, h, w)


def reference_impute(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The exact noise-free imputation of one image `[C,H,W]` where `mask` `[H,W]` is True, by a dense
    float64 solve of ROAD's system as its code assembles it (row by row over the neighbour offsets)."""
    c, h, w = image.shape
    removed = mask.bool().flatten()
    index = torch.full((h * w,), -1, dtype=torch.long)
    index[removed] = torch.arange(int(removed.sum()))
    n = int(removed.sum())
    a = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, c, dtype=torch.float64)
    values = image.to(torch.float64).reshape(c, h * w)
    kernel = stencil()
    flat = torch.arange(h * w)[removed]
    rows, cols = flat // w, flat % w
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            weight = float(kernel[dy + 1, dx + 1])
            if weight == 0:
                continue
            ny, nx = rows + dy, cols + dx
            exists = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            eq = torch.arange(n)[exists]
            neighbour = (ny * w + nx)[exists]
            a[eq, eq] -= weight
            unknown = index[neighbour] >= 0
            a[eq[unknown], index[neighbour[unknown]]] += weight
            rhs[eq[~unknown]] -= weight * values[:, neighbour[~unknown]].T
    solution = torch.linalg.solve(a, rhs)
    out = values.clone()
    out[:, removed] = solution.T
    return out.reshape(c, h, w).to(image.dtype)
