"""The maths of SoCo's metrics as pure functions on arrays (no models, no images): removal orders and masks,
the soundness accounting (Algorithm 3), completeness (Algorithm 4), the curve summaries and the Hausdorff
distance between curves (Table 1).

Conventions: a saliency map is non-negative and 2-D per sample (`maps.saliency`), flattened here to `[N, P]`
features. A removal ratio r removes `int(P·r)` features; "by area" counts features, "by value" thresholds
the normalised attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# SoCo's configuration (research notes §1-2): the soundness sweep, the completeness thresholds, the rule
SOUNDNESS_RATIOS = tuple(np.round(np.arange(0.98, 0.025, -0.01), 5).tolist())  # 96 ratios, 0.98 … 0.03
COMPLETENESS_THRESHOLDS = tuple(np.round(np.arange(0.9, 0.05, -0.1), 5).tolist())  # 0.9 … 0.1
AREA_RATIOS = tuple(np.round(np.arange(0.1, 0.95, 0.1), 5).tolist())  # ROAD, Deletion, Insertion: 0.1 … 0.9
EPSILON = 0.01  # an accuracy rise below this does not count as "the added features were predictive"
START = 0.04  # below this accuracy no step is judged (the original's cls_result_start)


def removed_count(size: int, ratio: float) -> int:
    """`int(size·ratio)` as meant: 100·0.58 is 57.99999999999999 in floating point, which `int` makes 57."""
    return int(size * ratio + 1e-9)


def ascending_order(maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Feature indices `[N, P]` sorting each flattened map `[N, ...]` ascending, ties in random order.

    One order serves both the attribution accounting and the removal masks (the original draws two
    independent tie-breaks, so its accounted and imputed pixel sets differ within a tied level)."""
    flat = maps.reshape(len(maps), -1)
    shuffle = torch.rand(flat.shape, generator=generator).argsort(dim=1).to(flat.device)
    within = flat.gather(1, shuffle).argsort(dim=1, stable=True)
    return shuffle.gather(1, within)


def ranks(order: torch.Tensor) -> torch.Tensor:
    """The inverse of `ascending_order`: each feature's position in it."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def removed_by_area(rank: torch.Tensor, ratio: float, order: str) -> torch.Tensor:
    """Boolean `[N, P]`: the `int(P·ratio)` least (LeRF) or most (MoRF) attributed features."""
    count = removed_count(rank.shape[1], ratio)
    if order == "lerf":
        return rank < count
    if order == "morf":
        return rank >= rank.shape[1] - count
    raise ValueError(f"Unknown order '{order}'; use lerf or morf.")


def removed_by_value(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean `[N, P]`: features whose attribution is strictly above `threshold` times the map's maximum
    (SoCo's completeness: with maps min-max normalised to [0,1] that is attribution > t)."""
    flat = maps.reshape(len(maps), -1)
    return flat > threshold * flat.amax(dim=1, keepdim=True)


@dataclass(frozen=True)
class SoundnessAccounting:
    """Per-sample attribution sums along a LeRF sweep, before any judgement: `kept[t, i]` is the attribution
    of the features sample i keeps at step t, `added[t, i]` what step t added to it (from all removed)."""

    kept: np.ndarray
    added: np.ndarray


def kept_sums(
    values: torch.Tensor, order: torch.Tensor, ratios: tuple[float, ...], *, previous: bool = False
) -> np.ndarray:
    """`[T, N]`: per sample, the sum of `values` `[N, ...]` over the features kept when the `int(P·r)` first
    features of the ascending `order` are removed, for each ratio r; with `previous`, the sums one ratio
    earlier instead (the first step's "earlier" keeps nothing: the sweep starts from all removed)."""
    flat = values.reshape(len(values), -1).double()
    size = flat.shape[1]
    sorted_values = flat.gather(1, order.to(flat.device))
    # tail[:, k] = Σ of the values at ascending positions ≥ k
    tail = torch.cat([sorted_values.flip(1).cumsum(1).flip(1), flat.new_zeros(len(flat), 1)], dim=1)
    counts = [removed_count(size, r) for r in ratios]
    return tail[:, [size, *counts[:-1]] if previous else counts].T.cpu().numpy()


def soundness_accounting(
    maps: torch.Tensor, order: torch.Tensor, ratios: tuple[float, ...] = SOUNDNESS_RATIOS
) -> SoundnessAccounting:
    """The attribution kept and newly added at each LeRF ratio, from the ascending `order` of `maps`."""
    kept = kept_sums(maps, order, ratios)
    return SoundnessAccounting(kept, kept - kept_sums(maps, order, ratios, previous=True))


def false_steps(performance: np.ndarray, epsilon: float = EPSILON, start: float | None = START) -> np.ndarray:
    """Boolean, shaped like `performance` `[T]` (dataset accuracy) or `[T, N]` (a per-sample score): whether
    step t's newly added features count as false attribution, i.e. performance rose by less than
    `epsilon` over step t−1 (the sweep starts from 0). With `start`, steps whose performance is not above
    it are never judged (too close to chance to tell)."""
    performance = np.asarray(performance, dtype=np.float64)
    previous = np.concatenate([np.zeros_like(performance[:1]), performance[:-1]])
    flagged = performance - previous < epsilon
    if start is not None:
        flagged &= performance > start
    return flagged


def soundness_ratios(accounting: SoundnessAccounting, flagged: np.ndarray) -> np.ndarray:
    """Per-sample soundness `[T, N]`: (kept attribution − accumulated false attribution) / kept, with step t's
    own judgement applied (paper Algorithm 3; the original code applies it one step later). `flagged` is
    `[T]` (one decision for the dataset) or `[T, N]`. NaN where nothing is kept yet."""
    flagged = flagged if flagged.ndim == 2 else np.broadcast_to(flagged[:, None], accounting.added.shape)
    false = np.cumsum(np.where(flagged, accounting.added, 0.0), axis=0)
    kept = accounting.kept
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept > 0, (kept - false) / np.where(kept > 0, kept, 1.0), np.nan)


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """The mean of the finite entries along `axis`; NaN where there are none (without numpy's warning: an
    image whose attribution is all zero has no soundness ratio, and is reported as skipped)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between two curves given as point sets `[K, 2]` (x, y)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a).all(1)], b[np.isfinite(b).all(1)]
    if not len(a) or not len(b):
        return float("nan")
    distances = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    return float(max(distances.min(axis=1).max(), distances.min(axis=0).max()))


def minimal_hausdorff(curves: list[np.ndarray]) -> float:
    """Table 1's figure: the smallest Hausdorff distance between any two of `curves` (near 0: two of them
    overlap, so the metric cannot tell those attributions apart)."""
    return min(hausdorff(p, q) for i, p in enumerate(curves) for q in curves[i + 1 :])
