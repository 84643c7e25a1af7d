"""Noisy linear imputation (ROAD, Rong et al. 2022): removed pixels become the weighted average of their
8 neighbours (1/6 edge, 1/12 diagonal, renormalised over the neighbours inside the image), solved jointly
for all removed pixels of an image, one system shared by the channels, plus Gaussian noise.

For removed pixels i the system is  W_i·x_i − Σ_j w_ij·x_j = 0,  where the sum runs over i's neighbours
(removed ones unknown, kept ones known) and W_i = Σ_j w_ij over the neighbours inside the image. Moving
the kept neighbours to the right gives A·u = b with A = (W − K) restricted to the removed pixels, K the
3×3 stencil: a weighted graph Laplacian plus the couplings to kept pixels, symmetric and positive
definite whenever every connected group of removed pixels touches a kept one, which on the connected pixel
grid fails only when every pixel is removed: that image has nothing to impute from, its system is singular
(ROAD's sparse solve fails there) and attribench fills it with 0, the model's input value at rest, plus the
noise.

- `reference_impute`: the exact path, one dense float64 solve per image (small images; tests).
- `impute`: the fast path for a whole batch at once, on the images' device, in pure torch: conjugate
  gradients preconditioned by one geometric multigrid V-cycle, a handful of iterations whatever the mask.

The V-cycle: damped Jacobi smoothing before and after (so that the preconditioner is symmetric), bilinear
interpolation P between grids of half the size (restricted to the removed pixels on the finest), Galerkin
coarse operators Pᵀ·A·P (3×3 stencils with coefficients per pixel, right for any mask, computed as one
strided convolution per level), and a dense pseudo-inverse on the coarsest grid (at most 8×8).

Arithmetic is float32 for float32 images. In a large removed region A⁻¹ magnifies a systematic rounding
error of 1e-7 in the residual to about 1e-3, so the residual and, while the updates are large, A·p are sums
of neighbour differences Σ w_ij·(x_i − x_j), whose rounding scales with the differences rather than with
the values; once the updates are small, A·p is a (faster) convolution. Maps are held as `[C,h,w,B]`
(channels, pixels, images): depthwise convolutions over the images as channels-last run ~10× faster on a
CPU than over `[N,1,h,w]` maps, and the operator's per-image maps `[h,w,B]` broadcast over C.

On the CPU a batch is solved in chunks of images advanced in lockstep. Every operation allocates its
result, and glibc serves an allocation above its largest mmap threshold (32 MiB) with fresh pages from the
kernel each time: the page faults made batch 64 at 224² (38 MiB per map, 116 MiB for the finest level's 9
coefficient maps) 2–3× slower per image than batch 16. A chunk holds as many images as keep its largest
temporary (a map, or those coefficient maps) within `CHUNK_BYTES` (17 images at 3×224² in float32), and
the time per image no longer grows with the batch; much smaller chunks are slower again (the images are
the convolutions' channels).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

EDGE, DIAGONAL = 1 / 6, 1 / 12
NOISE = 0.01  # ROAD's default noise standard deviation
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # 3×3 row-major; index 4 = centre
CENTRE = 4
DAMPING = 0.9  # Jacobi weight: below 1 the smoother converges (D ≥ ½·Σ_j |a_ij|, so D⁻¹A ≤ 2 by Gershgorin)
COARSEST = 8  # grids with no side above this are solved with a dense pseudo-inverse
PRECISE_ABOVE = 1e-2  # A·p by differences while the updates are larger than this, by convolution after
CHUNK_BYTES = 30 << 20  # a chunk's largest temporary on the CPU: under glibc's largest mmap threshold (notes)


def stencil(dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 3×3 neighbour weights (centre 0)."""
    return torch.tensor(
        [[DIAGONAL, EDGE, DIAGONAL], [EDGE, 0.0, EDGE], [DIAGONAL, EDGE, DIAGONAL]],
        dtype=dtype,
        device=device,
    )


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, transpose: bool = False, **conv: int) -> torch.Tensor:
    """`kernel` `[3,3]` convolved (or transposed-convolved) with every map of `x` `[C,h,w,B]`."""
    b = x.shape[-1]
    operation = F.conv_transpose2d if transpose else F.conv2d
    return operation(x.permute(0, 3, 1, 2), kernel.expand(b, 1, 3, 3), groups=b, **conv).permute(0, 2, 3, 1)


def _differences(y: torch.Tensor) -> torch.Tensor:
    """Σ_j w_ij·(y_i − y_j) over the in-image neighbours j of every pixel i of `y` `[C,h,w,B]`."""
    _, h, w, _ = y.shape
    out = torch.zeros_like(y)
    for (dy, dx), weight in (((0, 1), EDGE), ((1, 0), EDGE), ((1, 1), DIAGONAL), ((1, -1), DIAGONAL)):
        left, right = max(0, -dx), w - max(0, dx)
        here = (slice(None), slice(0, h - dy), slice(left, right))
        there = (slice(None), slice(dy, h), slice(left + dx, right + dx))
        step = y[here] - y[there]
        out[here].add_(step, alpha=weight)
        out[there].sub_(step, alpha=weight)
    return out


def _coarse_size(n: int) -> int:
    """Coarse points sit on the even fine points 0, 2, …, the last one on or just past the edge (an even
    side needs the point past it for the interpolation to reproduce constants up to the edge)."""
    return n // 2 + 1


def _span(h: int, w: int) -> tuple[int, int]:
    """The fine rows and columns that the coarse grid's interpolation reaches: the side, or one more."""
    return 2 * _coarse_size(h) - 1, 2 * _coarse_size(w) - 1


def _restrict(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Pᵀ·x for maps `x` `[C,·,·,B]` given over the span of the coarse grid (zero past the edge)."""
    return _depthwise(x, kernel, stride=2, padding=1)


def _prolong(x: torch.Tensor, kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """P·x: coarse maps `x` `[C,hc,wc,B]` interpolated to the fine `[h,w]` grid."""
    return _depthwise(x, kernel, transpose=True, stride=2, padding=1)[:, :h, :w]


def _interpolation(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Bilinear interpolation weights `[3,3]` of a coarse point to the fine points around it."""
    line = torch.tensor([0.5, 1.0, 0.5], dtype=dtype, device=device)
    return line[:, None] * line[None, :]


def _galerkin_kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The stride-2 convolution `[9,9,3,3]` that maps a fine operator's 9 coefficient maps to those of
    Pᵀ·A·P: entry (D, δ, s) = P_s·P_{s+δ−2D}, the share of the fine coupling (2I+s, 2I+s+δ) in the
    coarse coupling (I, I+D), P_t the bilinear weight of offset t."""
    offsets = torch.tensor((-1, 0, 1), device=device)

    def weight(t: torch.Tensor) -> torch.Tensor:
        return (1 - t.abs().to(dtype) / 2).clamp(min=0)

    # one axis: [D, δ, s]; the 2-D weights are products of the two axes'
    line = weight(offsets) * weight(offsets + offsets[:, None] - 2 * offsets[:, None, None])
    return torch.einsum("adk,bel->abdekl", line, line).reshape(9, 9, 3, 3)


def _galerkin(coefficients: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Coefficient maps `[B,9,h,w]` (channels-last) of A, zero past the edge, to those of Pᵀ·A·P."""
    h, w = coefficients.shape[-2:]
    rows, cols = _span(h, w)
    if (rows, cols) != (h, w):
        coefficients = F.pad(coefficients, (0, cols - w, 0, rows - h))
    return F.conv2d(coefficients, kernel, stride=2, padding=1)


def _coarse_residual(coefficients: torch.Tensor, x: torch.Tensor, r: torch.Tensor, out: torch.Tensor) -> None:
    """`out` = r − A·x for the operator with coefficient maps `[9,h,w,B]` (entry k: the coupling to the
    neighbour at OFFSETS[k]) and maps `x`, `r` `[C,h,w,B]`."""
    _, h, w, _ = x.shape
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    torch.addcmul(r, coefficients[CENTRE], x, value=-1, out=out)
    for k, (dy, dx) in enumerate(OFFSETS):
        if k != CENTRE:
            out.addcmul_(coefficients[k], padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], value=-1)


def _pseudo_inverse(coefficients: torch.Tensor) -> torch.Tensor:
    """The pseudo-inverse `[B,n,n]` (float64 eigendecomposition) of the operators with coefficient maps
    `[9,h,w,B]`, n = h·w: coarse operators are singular where interpolated columns coincide."""
    _, h, w, b = coefficients.shape
    index = torch.arange(h * w, device=coefficients.device).view(h, w)
    rows, cols, values = [], [], []
    for k, (dy, dx) in enumerate(OFFSETS):
        ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
        rows.append(index[ys, xs].reshape(-1))
        cols.append((index[ys, xs] + dy * w + dx).reshape(-1))
        values.append(coefficients[k, ys, xs].reshape(-1, b))
    dense = torch.zeros(b, h * w, h * w, dtype=torch.float64, device=coefficients.device)
    dense[:, torch.cat(rows), torch.cat(cols)] = torch.cat(values).T.double()
    eigenvalues, vectors = torch.linalg.eigh(dense)
    keep = eigenvalues > 1e-9 * eigenvalues.abs().amax(dim=1, keepdim=True)
    inverse = torch.where(keep, 1 / torch.where(keep, eigenvalues, 1.0), 0.0)
    return ((vectors * inverse[:, None, :]) @ vectors.mT).to(coefficients.dtype)


@dataclass
class _Multigrid:
    """The V-cycle for one batch of masks. The finest operator A = m·(W − K)·m (m: the removed pixels) is
    applied as a convolution; level l ≥ 1 holds the coefficient maps of Pᵀ·A_{l−1}·P. Per-pixel maps are
    `[h,w,B]`, shared by the channels."""

    removed: torch.Tensor  # [H,W,B], 1.0 where removed
    diagonal: torch.Tensor  # [H,W,B], m·W
    kernel: torch.Tensor  # [3,3], K
    interpolation: torch.Tensor  # [3,3], bilinear weights
    coefficients: list[torch.Tensor]  # level l ≥ 1 at index l − 1: [9,h,w,B]
    smoothers: list[torch.Tensor]  # level l: [h,w,B], DAMPING / D
    solve: torch.Tensor  # [B,n,n], the pseudo-inverse on the last level
    buffers: dict[int, torch.Tensor] = field(default_factory=dict)  # level: residual over the span

    @classmethod
    def build(cls, masks: torch.Tensor, dtype: torch.dtype) -> _Multigrid:
        """The hierarchy for `masks` `[B,H,W]` (True = removed)."""
        device = masks.device
        m = masks.to(dtype)
        _, h, w = m.shape
        kernel = stencil(dtype, device)
        ones = F.pad(torch.ones(h, w, dtype=dtype, device=device), (1, 1, 1, 1))
        weight = sum(
            kernel[dy + 1, dx + 1] * ones[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in OFFSETS
        )
        # the finest operator's coefficient maps [B,9,·,·] over the span of the coarse grid (zero past the
        # edge): W_i on the diagonal, −w_ij between removed pixels
        rows, cols = _span(h, w)
        padded = F.pad(m, (1, cols - w + 1, 1, rows - h + 1))
        centre = padded[:, 1:-1, 1:-1]
        # channels-last from the start, as the Galerkin convolution takes it
        finest = torch.empty(m.shape[0], rows, cols, 9, dtype=dtype, device=device).permute(0, 3, 1, 2)
        for k, (dy, dx) in enumerate(OFFSETS):
            neighbour = padded[:, 1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
            torch.mul(centre, neighbour, out=finest[:, k]).mul_(-kernel[dy + 1, dx + 1])
        finest[:, CENTRE, :h, :w] = m * weight
        levels, sizes = [finest], [(h, w)]
        galerkin = _galerkin_kernel(dtype, device)
        while max(sizes[-1]) > COARSEST:
            levels.append(_galerkin(levels[-1], galerkin))
            sizes.append(tuple(levels[-1].shape[-2:]))
        coarse = [c.permute(1, 2, 3, 0).contiguous() for c in levels[1:]]  # [9,h,w,B], for the residuals
        last = levels[-1][..., : sizes[-1][0], : sizes[-1][1]].permute(1, 2, 3, 0)
        m, weight = m.permute(1, 2, 0).contiguous(), weight[:, :, None]
        smoothers = [m * (DAMPING / weight)]
        for c in coarse:
            bound = torch.maximum(c[CENTRE], c.abs().sum(0) / 2)
            smoothers.append(torch.where(bound > 0, DAMPING / torch.where(bound > 0, bound, 1.0), 0.0))
        return cls(
            removed=m,
            diagonal=m * weight,
            kernel=kernel,
            interpolation=_interpolation(dtype, device),
            coefficients=coarse,
            smoothers=smoothers,
            solve=_pseudo_inverse(last),
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A·x for maps `x` `[C,H,W,B]` that are 0 at kept pixels, by convolution (fast; rounding relative
        to the values)."""
        return torch.addcmul(self.diagonal * x, self.removed, _depthwise(x, self.kernel, padding=1), value=-1)

    def _residual(self, level: int, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """r − A_level·x over the span of the next coarser grid (zero past the edge), in a buffer that is
        reused: valid until the next call for this level."""
        c, h, w, b = x.shape
        shape = (c, *_span(h, w), b)
        if level not in self.buffers or self.buffers[level].shape != shape:
            self.buffers[level] = torch.zeros(shape, dtype=x.dtype, device=x.device)
        out = self.buffers[level][:, :h, :w]
        if level > 0:
            _coarse_residual(self.coefficients[level - 1], x, r, out)
        else:
            torch.addcmul(r, self.removed, _depthwise(x, self.kernel, padding=1), out=out)
            out.addcmul_(self.diagonal, x, value=-1)
        return self.buffers[level]

    def __call__(self, r: torch.Tensor, level: int = 0) -> torch.Tensor:
        """An approximation of A⁻¹·r for residual maps `r` `[C,h,w,B]`, linear and symmetric in r."""
        c, h, w, b = r.shape
        if level == len(self.smoothers) - 1:
            return (self.solve @ r.reshape(c, h * w, b).permute(2, 1, 0)).permute(2, 1, 0).reshape(c, h, w, b)
        smoother = self.smoothers[level]
        x = smoother * r
        coarse = self(_restrict(self._residual(level, x, r), self.interpolation), level + 1)
        correction = _prolong(coarse, self.interpolation, h, w)
        x = torch.addcmul(x, self.removed, correction) if level == 0 else x + correction
        return x.addcmul_(smoother, self._residual(level, x, r)[:, :h, :w])


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ a·b over the pixels of every map of `[C,h,w,B]` tensors: `[C,1,1,B]`."""
    return (a * b).sum(dim=(1, 2), keepdim=True)


@dataclass
class _ConjugateGradients:
    """Multigrid-preconditioned conjugate gradients on the systems of one chunk of images, `[C,H,W,B]` maps
    held between the calls so that the chunks of a batch advance in lockstep: an iteration is `step` on
    every chunk, then, unless the largest update of the whole batch is small enough, `descend` on every
    chunk."""

    multigrid: _Multigrid
    kept: torch.Tensor  # the images at kept pixels, 0 at removed ones; every map below is 0 at kept pixels
    u: torch.Tensor  # the solution so far
    r: torch.Tensor  # the residual
    p: torch.Tensor  # the search direction
    rz: torch.Tensor  # [C,1,1,B], r·z for the current residual r and its preconditioned z
    ap: torch.Tensor | None = None  # A·p of the last step
    alpha: torch.Tensor | None = None  # [C,1,1,B], the last step's length along p

    @classmethod
    def start(
        cls, images: torch.Tensor, masks: torch.Tensor, init: torch.Tensor | None, dtype: torch.dtype
    ) -> _ConjugateGradients:
        """The first search direction for `images` `[B,C,H,W]` with `masks` `[B,H,W]`, from 0 or `init`."""
        x = images.to(dtype).permute(1, 2, 3, 0).contiguous()
        multigrid = _Multigrid.build(masks, dtype)
        inside = multigrid.removed
        kept = x * (1 - inside)
        u = torch.zeros_like(x)
        if init is not None:  # not where every pixel is removed: the singular system would drift from it
            u = inside * init.to(dtype).permute(1, 2, 3, 0) * ~masks.reshape(len(masks), -1).all(dim=1)
        r = -inside * _differences(u + kept)
        z = multigrid(r)
        return cls(multigrid, kept, u, r, z, _dot(r, z))

    def step(self, precise: bool) -> float:
        """Move u along p to the minimum; the largest update. `precise`: A·p by differences (see the
        module's notes)."""
        self.ap = self.multigrid.removed * _differences(self.p) if precise else self.multigrid.apply(self.p)
        curvature = _dot(self.p, self.ap)
        self.alpha = torch.where(curvature > 0, self.rz / torch.where(curvature > 0, curvature, 1.0), 0.0)
        update = self.alpha * self.p
        self.u += update
        low, high = torch.aminmax(update)
        return max(-float(low), float(high))

    def descend(self) -> None:
        """The residual after the last step and the next search direction."""
        self.r.addcmul_(self.alpha, self.ap, value=-1)
        z = self.multigrid(self.r)
        rz = _dot(self.r, z)
        beta = torch.where(self.rz > 0, rz / torch.where(self.rz > 0, self.rz, 1.0), 0.0)
        self.p, self.rz = torch.addcmul(z, beta, self.p), rz

    def solution(self) -> torch.Tensor:
        """The imputed images `[B,C,H,W]`, noise-free."""
        return (self.u + self.kept).permute(3, 0, 1, 2)


def chunk_size(images: torch.Tensor) -> int:
    """Images per chunk for `images` `[B,C,H,W]`: on the CPU as many as keep the largest temporary (a map,
    or the finest level's 9 coefficient maps) within `CHUNK_BYTES` (at least one), elsewhere the whole
    batch."""
    if images.device.type != "cpu":
        return max(1, len(images))
    _, channels, h, w = images.shape
    rows, cols = _span(h, w)
    item = torch.promote_types(images.dtype, torch.float32).itemsize
    return max(1, CHUNK_BYTES // (max(channels * h * w, 9 * rows * cols) * item))


def impute(
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    noise: float = NOISE,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk: int | None = None,
) -> torch.Tensor:
    """`images` `[B,C,H,W]` with the pixels where `masks` `[B,H,W]` is True replaced by their noisy linear
    imputation; the other pixels are returned unchanged.

    Multigrid-preconditioned conjugate gradients on every (image, channel) system at once (float32, or float64
    for float64 images), from 0 or from `init` (e.g. the previous step's imputed images), until the last
    update is at most `tol` everywhere, in the images' units (the error left is then smaller: each iteration
    shrinks it several-fold), or `max_iter` iterations. The batch is solved in chunks of at most `chunk`
    images (default `chunk_size`), of even sizes, advancing in lockstep with the stopping rule of the whole
    batch, so that the chunking changes no value beyond rounding. Noise: `noise`·N(0,1) per imputed pixel and
    channel, from `generator` (on the CPU, then moved), so that the same generator gives the same images on
    every device.
    """
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk={chunk} images; give a positive number (or None for the default).")
    if not len(images):
        return images.clone()  # nothing to impute
    dtype = torch.promote_types(images.dtype, torch.float32)
    masks = masks.bool()
    count = -(-len(images) // (chunk or chunk_size(images)))  # chunks of even sizes: a small one is slow
    bounds = [len(images) * k // count for k in range(count + 1)]
    parts = [slice(start, end) for start, end in itertools.pairwise(bounds)]
    solvers = [
        _ConjugateGradients.start(images[part], masks[part], None if init is None else init[part], dtype)
        for part in parts
    ]
    size = float("inf")
    for _ in range(max_iter):
        # the rounding of A·p adds up in r: by differences while the updates are large, as a systematic
        # error of 1e-7 times them would show in u; by convolution once they are small
        precise = size > PRECISE_ABOVE
        size = max(solver.step(precise) for solver in solvers)
        if size <= tol:
            break
        for solver in solvers:
            solver.descend()
    if noise > 0:
        filled = torch.randn(images.shape, generator=generator, dtype=dtype).to(images.device)
        filled.mul_(noise).mul_(masks[:, None])
        for part, solver in zip(parts, solvers, strict=True):
            filled[part] += solver.solution()
    else:
        filled = torch.cat([solver.solution() for solver in solvers])
    return filled.to(images.dtype)


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
