"""The checks' maths as pure numpy functions on batches of maps, one row per sample."""

from __future__ import annotations

import numpy as np


def pixel_magnitudes(attributions: np.ndarray) -> np.ndarray:
    """`[B,C,H,W]` attributions → `[B, H·W]` magnitudes: |a| summed over channels, one value per pixel,
    so that a map's complexity does not depend on how many channels its method returns."""
    magnitudes = np.abs(np.asarray(attributions, dtype=np.float64)).sum(axis=1)
    return magnitudes.reshape(len(magnitudes), -1)


def all_zero(magnitudes: np.ndarray) -> np.ndarray:
    """`[B]` True where a row of magnitudes is all zero: it has no distribution to measure."""
    return ~(magnitudes != 0).any(axis=1)


def gini(magnitudes: np.ndarray) -> np.ndarray:
    """Gini index of each row of non-negative values (Chalasani et al. 2020, as Quantus computes it):
    with a sorted ascending, G = Σ_i (2i − n − 1)·a_i / (n·Σ a), i = 1..n. 0 for a constant row,
    (n − 1)/n for a single non-zero value; NaN for an all-zero row."""
    sorted_rows = np.sort(magnitudes, axis=1)
    n = sorted_rows.shape[1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sorted_rows @ weights) / (n * sorted_rows.sum(axis=1))


def entropy(magnitudes: np.ndarray) -> np.ndarray:
    """Shannon entropy (natural log) of each row's fractional contribution p_i = a_i / Σ a (Bhatt et al.
    2020), with 0·log 0 = 0: log n for a constant row, 0 for a single non-zero value; NaN for an all-zero
    row."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = magnitudes / magnitudes.sum(axis=1, keepdims=True)
        terms = np.where(shares > 0, shares * np.log(shares), 0.0)
    return np.where(all_zero(magnitudes), np.nan, -terms.sum(axis=1))
