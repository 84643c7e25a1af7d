"""BAM's metric maths as pure functions (Yang & Kim 2019; google-research-datasets/bam `bam/metrics.py`).

An attribution map becomes one number per image, g = the mean of the `normalised_map` over the object's
mask (`object_attribution`). The metrics compare g between two models on the same images (MCS, RMCS) or
between two versions of an image for one model (IDR, IIR). Like the original, each counts only the images
that every model in the comparison classifies correctly (`keep`), and returns the per-image values over
those images so that the caller can bootstrap a confidence interval; NaN marks an undefined value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

ArrayLike = torch.Tensor | npt.ArrayLike

PERCENTILE = 0.99


def normalised_map(attributions: torch.Tensor) -> torch.Tensor:
    """`[B,H,W]` float64 in [0,1]: BAM's per-map normalisation of `[B,C,H,W]`, `[B,1,H,W]` or `[B,H,W]`.

    The positive part, summed over channels (negative evidence is dropped, no absolute value), then per
    map `(x − min) / (p99 − min)` clipped to [0,1], p99 being the 99th percentile with linear
    interpolation between the two nearest ranks (numpy's default `np.percentile`, same as
    `torch.quantile`). Where p99 == min the original divides by zero (NaN at the minimum, inf clipped to
    1 above it); here the minimum maps to 0 and anything above it to 1, the limit of the formula, so a
    constant map is all zeros.
    """
    positive = attributions.to(torch.float64).clamp(min=0)
    maps = positive.sum(dim=1) if positive.dim() == 4 else positive
    flat = maps.flatten(1)
    low = flat.amin(dim=1)[:, None, None]
    span = torch.quantile(flat, PERCENTILE, dim=1)[:, None, None] - low
    above = maps - low
    return torch.where(span > 0, (above / span).clamp(0, 1), (above > 0).to(maps.dtype))


def object_attribution(normalised: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """g `[B]` float64: the mean of each normalised map `[B,H,W]` over its object's mask `[B,H,W]` (bool),
    as the original (`Σ N·M / count_nonzero(M)`); NaN where the mask is empty."""
    masks = masks.bool()
    count = masks.flatten(1).sum(dim=1)
    total = (normalised.to(torch.float64) * masks).flatten(1).sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


@dataclass(frozen=True)
class MetricValues:
    """A BAM metric over the kept images: `per_image` float64 (NaN where undefined; 0/1 for rates) at the
    positions `index` of the inputs, and how many images the correct-classification filter dropped."""

    per_image: np.ndarray
    index: np.ndarray
    n_dropped: int

    @property
    def n_kept(self) -> int:
        return len(self.per_image)

    @property
    def value(self) -> float:
        """The mean over the defined per-image values (NaN if there is none): the metric."""
        defined = self.per_image[~np.isnan(self.per_image)]
        return float(defined.mean()) if defined.size else float("nan")


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _kept(per_image: np.ndarray, keep: ArrayLike) -> MetricValues:
    keep = _numpy(keep).astype(bool)
    if keep.shape != per_image.shape:
        raise ValueError(f"keep has shape {keep.shape}, the per-image values {per_image.shape}.")
    return MetricValues(per_image[keep], np.flatnonzero(keep), int((~keep).sum()))


def _rate(condition: np.ndarray, *defined_by: np.ndarray) -> np.ndarray:
    """`condition` as 0/1, NaN where any of `defined_by` is NaN (a comparison with NaN is no answer)."""
    undefined = np.any([np.isnan(v) for v in defined_by], axis=0)
    return np.where(undefined, np.nan, condition.astype(np.float64))


def mcs(g_first: ArrayLike, g_second: ArrayLike, keep: ArrayLike) -> MetricValues:
    """Model contrast score: per image g(first model) − g(second model) on the same images, e.g.
    obj − scene on the composites (research notes §3.4); higher is better."""
    return _kept(_numpy(g_first).astype(np.float64) - _numpy(g_second).astype(np.float64), keep)


def idr(g_without: ArrayLike, g_with: ArrayLike, keep: ArrayLike) -> MetricValues:
    """Input dependence rate: per image 1 where the scene model gives the object's region a strictly
    higher g without the object (scene_only image) than with it (composite), as the original (no
    margin); the mean is the rate, higher is better (research notes §3.5)."""
    without, with_ = _numpy(g_without).astype(np.float64), _numpy(g_with).astype(np.float64)
    return _kept(_rate(without > with_, without, with_), keep)


def iir(g_clean: ArrayLike, g_patched: ArrayLike, keep: ArrayLike, threshold: float = 0.1) -> MetricValues:
    """Input independence rate: per image 1 where |g(x) − g(x+δ)| < threshold · g(x) (strict, relative
    to the clean image's g, as the original); so an image with g(x) = 0 never counts as independent.
    The mean is the rate, higher is better (research notes §3.6)."""
    clean, patched = _numpy(g_clean).astype(np.float64), _numpy(g_patched).astype(np.float64)
    return _kept(_rate(np.abs(clean - patched) < threshold * clean, clean, patched), keep)


def rmcs(g_per_model: ArrayLike, keep: ArrayLike) -> list[MetricValues]:
    """Relative model contrast: for i = 1..K−1 the MCS of model i against the last one, g(scene_i) −
    g(scene_K) per image of dog_bedroom (research notes §3.7); should be positive and decrease with i.

    `g_per_model` `[K,N]`. `keep` `[N]` (images correct for all K models) or `[K,N]` (correctness per
    model): then each pair keeps the images that both of its models classify correctly, as the original.
    """
    g = _numpy(g_per_model).astype(np.float64)
    correct = np.broadcast_to(_numpy(keep).astype(bool), g.shape)
    return [mcs(g[i], g[-1], correct[i] & correct[-1]) for i in range(len(g) - 1)]


def is_decreasing(values: ArrayLike) -> bool:
    """Whether `values` strictly decrease (False with a NaN): RMCS's monotonicity; together with
    `(values > 0).all()` it is the "positive and decreasing" that BAM expects of a good method."""
    values = _numpy(values).astype(np.float64)
    return bool(np.all(np.diff(values) < 0))


def label_probability_drop(
    logits_with: ArrayLike, logits_without: ArrayLike, labels: ArrayLike
) -> np.ndarray:
    """Per image, how much the softmax probability of its label falls when the object is removed:
    p(label | with) − p(label | without), from `[N,K]` logits of the same images with and without the
    object. The functional check of how much a model relies on the object (RMCS's scene_k models: the
    dog in bedrooms); the obj/scene models' check compares accuracies instead (`models.py`)."""
    with_, without = (
        torch.as_tensor(_numpy(z), dtype=torch.float64).softmax(dim=1) for z in (logits_with, logits_without)
    )
    rows = torch.arange(len(with_))
    labels = torch.as_tensor(_numpy(labels), dtype=torch.int64)
    return (with_[rows, labels] - without[rows, labels]).numpy()
