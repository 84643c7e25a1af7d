"""The maths of SoCo's metrics as pure functions on arrays (no models, no images): removal orders and masks,
the soundness accounting (Algorithm 3), completeness (Algorithm 4), the curve summaries and the Hausdorff
distance between curves (Table 1), and Petsiuk et al.'s Deletion and Insertion (RISE, BMVC 2018): their
step schedule, blurred canvas and area under the curve.

Conventions: a saliency map is non-negative and 2-D per sample (`maps.saliency`), flattened here to `[N, P]`
features. A removal ratio r removes `int(P·r)` features; "by area" counts features, "by value" thresholds
the normalised attribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

# SoCo's configuration (research notes §1-2): the soundness sweep, the completeness thresholds, the rule
SOUNDNESS_RATIOS = tuple(np.round(np.arange(0.98, 0.025, -0.01), 5).tolist())  # 96 ratios, 0.98 … 0.03
COMPLETENESS_THRESHOLDS = tuple(np.round(np.arange(0.9, 0.05, -0.1), 5).tolist())  # 0.9 … 0.1
AREA_RATIOS = tuple(np.round(np.arange(0.1, 0.95, 0.1), 5).tolist())  # ROAD, Deletion, Insertion: 0.1 … 0.9
# exact fractions: the judgement compares counts of correct images, never floating-point accuracies.
# EPSILON: an accuracy rise below it does not count as "the added features were predictive"
EPSILON = Fraction(1, 100)
START = Fraction(4, 100)  # at or below this accuracy no step is judged (the original's cls_result_start)
SCORE_EPSILON = 0.01  # the same rule on a real-valued score (the label's logit, per sample)


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


def false_steps(
    correct: np.ndarray, n: int, epsilon: Fraction = EPSILON, start: Fraction = START
) -> np.ndarray:
    """Boolean `[T]`: whether step t's newly added features count as false attribution, judged on the
    number of correctly classified images `correct[t]` out of `n` (dataset accuracy `correct/n`).

    Rule, in exact integer arithmetic: false iff Δcorrect = correct[t] − correct[t−1] < ε·n (the sweep
    starts from 0 correct), i.e. Δcorrect·q < p·n for ε = p/q; with `start` = s/r, steps with
    correct[t]·r ≤ s·n (accuracy not above s: too close to chance to tell) are never judged. At n = 100 and
    ε = 0.01 a rise of exactly one image is real at every level; the same test on float accuracies k/n
    calls it false at k = 3, 6, 8, 9, 11, … where (k+1)/100 − k/100 rounds below 0.01 (Li, Zhang et al.
    2024, Algorithm 3, states the rule on accuracies)."""
    correct = np.asarray(correct)
    if not np.issubdtype(correct.dtype, np.integer):
        raise TypeError(f"false_steps judges counts of correct images; got {correct.dtype} values.")
    correct = correct.astype(np.int64)
    previous = np.concatenate([np.zeros(1, np.int64), correct[:-1]])
    rose_enough = (correct - previous) * epsilon.denominator >= epsilon.numerator * n
    above_start = correct * start.denominator > start.numerator * n
    return ~rose_enough & above_start


def false_score_steps(score: np.ndarray, epsilon: float = SCORE_EPSILON) -> np.ndarray:
    """Boolean `[T, N]`: per sample, whether step t's added features count as false attribution because the
    sample's own score (a real-valued logit) rose by less than `epsilon` over step t−1 (from 0); the
    original's "PredScore" indicator, never gated by a start level."""
    score = np.asarray(score, dtype=np.float64)
    previous = np.concatenate([np.zeros_like(score[:1]), score[:-1]])
    return score - previous < epsilon


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


# RISE's insertion canvas (Petsiuk et al. 2018, evaluation code): the image convolved with an 11×11 kernel
# made by scipy's gaussian_filter(σ = 5) of a centred unit impulse, zero padding
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
RISE_STEPS = 224  # RISE's step: 224 pixels of a 224×224 image, i.e. 224 steps


def rise_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """`[size, size]`: scipy's `gaussian_filter(impulse, sigma)` (truncate 4, mode "reflect") rebuilt in
    numpy: the normalised Gaussian of radius int(4σ + 0.5), correlated with the centred impulse padded by
    half-sample reflection, along each axis (so the kernel sums to 1 and is an outer product)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * x * x / (sigma * sigma))
    weights /= weights.sum()
    impulse = np.zeros(size)
    impulse[size // 2] = 1.0
    line = np.correlate(np.pad(impulse, radius, mode="symmetric"), weights, mode="valid")
    return np.outer(line, line)


def blur(images: torch.Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """RISE's blurred canvas of `images` `[B,C,H,W]`: each channel convolved with `rise_kernel`, zero padding
    of size//2 (the original convolves the normalised image, where 0 is the mean colour; here 0 is the
    model's input 0)."""
    kernel = torch.as_tensor(rise_kernel(size, sigma), dtype=images.dtype, device=images.device)
    channels = images.shape[1]
    weight = kernel.expand(channels, 1, size, size)
    return torch.nn.functional.conv2d(images, weight, padding=size // 2, groups=channels)


def rise_counts(size: int, steps: int = RISE_STEPS) -> list[int]:
    """Features deleted (or inserted) before each evaluation of RISE's game on `size` features: `step` =
    ⌈size/steps⌉ per step, n = ⌈size/step⌉ steps, counts min(i·step, size) for i = 0 … n (n + 1 points)."""
    step = -(-size // steps)
    return [min(i * step, size) for i in range(-(-size // step) + 1)]


def rise_auc(curve: np.ndarray) -> np.ndarray:
    """RISE's area under a curve `[T, ...]` of T equally spaced points on [0, 1]: the trapezoidal rule,
    (Σ y − y₀/2 − y_last/2) / (T − 1)."""
    curve = np.asarray(curve, dtype=np.float64)
    return (curve.sum(axis=0) - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1)
