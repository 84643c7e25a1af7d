"""How alike two batches of maps are, one value per pair: the similarity measures of the randomisation
checks (Adebayo et al. 2018): Spearman rank correlation and SSIM. Pure numpy, batched over rows."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SSIM_WINDOW = 7  # side of the square window (Wang et al. 2004's uniform variant, scikit-image's default)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def pixel_maps(attributions: np.ndarray, *, absolute: bool) -> np.ndarray:
    """`[B,C,H,W]` → `[B,H,W]`: the sum over channels of a (signed) or of |a|, one value per pixel, so that
    maps of methods with different channel counts compare alike."""
    values = np.asarray(attributions, dtype=np.float64)
    return (np.abs(values) if absolute else values).sum(axis=1)


def average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each row's values, ties sharing the mean of their ranks (as `scipy.stats.rankdata`)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    n = rows.shape[1]
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    positions = np.broadcast_to(np.arange(n), ordered.shape)
    starts_run = np.ones(ordered.shape, dtype=bool)
    starts_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends_run = np.ones(ordered.shape, dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    first = np.maximum.accumulate(np.where(starts_run, positions, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_run, positions, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(ordered)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=1)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of rows; NaN where either row is constant (no correlation is
    defined)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (a * b).sum(axis=1) / scale, np.nan)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (flattened): the Pearson correlation of their average
    ranks; 1 for maps that order pixels alike, NaN where a map is constant."""
    return pearson(average_ranks(a), average_ranks(b))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) of each pair of `[H,W]` maps: a 7×7 uniform window with
    sample (co)variances, K1 = 0.01, K2 = 0.03, averaged over the windows that fit inside the map, with the
    pair's data range max − min over both maps (as Adebayo et al. 2018 compare maps with scikit-image).
    1 for equal maps (a pair of equal constant maps, whose range is 0, included)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 3 or a.shape != b.shape or min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim compares [B,H,W] map pairs of one shape, at least {SSIM_WINDOW}×{SSIM_WINDOW}; got "
            f"{a.shape} and {b.shape}."
        )
    both = np.concatenate([a.reshape(len(a), -1), b.reshape(len(b), -1)], axis=1)
    data_range = (both.max(axis=1) - both.min(axis=1))[:, None, None]
    size = SSIM_WINDOW * SSIM_WINDOW
    correction = size / (size - 1)

    def window_mean(x: np.ndarray) -> np.ndarray:
        return sliding_window_view(x, (SSIM_WINDOW, SSIM_WINDOW), axis=(1, 2)).mean(axis=(-2, -1))

    mean_a, mean_b = window_mean(a), window_mean(b)
    var_a = correction * (window_mean(a * a) - mean_a**2)
    var_b = correction * (window_mean(b * b) - mean_b**2)
    cov = correction * (window_mean(a * b) - mean_a * mean_b)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
    denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    with np.errstate(invalid="ignore", divide="ignore"):
        windows = np.where(denominator > 0, numerator / denominator, 1.0)
    return windows.mean(axis=(1, 2))
