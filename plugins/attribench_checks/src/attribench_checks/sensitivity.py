"""Robustness and invariance maths as pure numpy functions on batches, one row per sample.

A map Φ(x) is compared with the map of a variant: of a perturbed input x' (Yeh et al. 2019's sensitivity,
Alvarez-Melis & Jaakkola 2018's local Lipschitz estimate) or of a model whose first layer absorbs a
constant shift of the input (Kindermans et al. 2017's input invariance). Norms are Frobenius norms of a
whole map (all channels and pixels), in float64.
"""

from __future__ import annotations

import numpy as np


def frobenius(arrays: np.ndarray) -> np.ndarray:
    """`[B, ...]` → `[B]`: the Frobenius (L2) norm of each row, all other axes together, in float64."""
    rows = np.asarray(arrays, dtype=np.float64).reshape(len(arrays), -1)
    return np.sqrt((rows * rows).sum(axis=1))


def relative_change(reference: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """`[B]` ‖Φ − Φ'‖ / ‖Φ‖ of each map pair (Yeh et al. 2019's normalised sensitivity of one perturbation):
    0 for an unchanged map, 1 for a map that became zero; NaN where Φ is all zero (nothing to compare
    with)."""
    difference = frobenius(np.asarray(variant, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(frobenius(reference) > 0, difference / frobenius(reference), np.nan)


def lipschitz_ratio(
    reference: np.ndarray, variant: np.ndarray, inputs: np.ndarray, perturbed: np.ndarray
) -> np.ndarray:
    """`[B]` ‖Φ(x) − Φ(x')‖₂ / ‖x − x'‖₂ (Alvarez-Melis & Jaakkola 2018); NaN where x' = x."""
    numerator = frobenius(np.asarray(variant, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    denominator = frobenius(np.asarray(perturbed, dtype=np.float64) - np.asarray(inputs, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def max_sensitivity(changes: np.ndarray) -> np.ndarray:
    """`[N, B]` relative changes of N perturbations → `[B]` their maximum (Yeh et al. 2019, SENS_MAX)."""
    return np.asarray(changes, dtype=np.float64).max(axis=0)


def avg_sensitivity(changes: np.ndarray) -> np.ndarray:
    """`[N, B]` relative changes of N perturbations → `[B]` their mean (Yeh et al. 2019's average
    sensitivity, a Monte-Carlo estimate of the expectation over the ball)."""
    return np.asarray(changes, dtype=np.float64).mean(axis=0)


def invariant(changes: np.ndarray, tolerance: float) -> np.ndarray:
    """`[B]` 1.0 where a map's relative change under the shift is at most `tolerance` (Kindermans et al.
    2017: the map of the shifted pair must equal the original), else 0.0; NaN stays NaN."""
    changes = np.asarray(changes, dtype=np.float64)
    return np.where(np.isnan(changes), np.nan, (changes <= tolerance).astype(np.float64))
