"""SoCo's synthetic validation (paper §5.1, Appendix G.1): 200 features from N(0, I), label = sign of their
sum, the transparent model y = σ(Σ x_i), Shapley values as ground-truth attribution (x_i for positive
samples, −x_i for negative ones, clipped at 0), modified by Remove and Introduce, then soundness and
completeness of each version, repeated over trials.

Choices the paper leaves open (documented in the plugin README):
- A removed feature is set to 0, its expected value: the baseline the Shapley values are taken against.
- Soundness judges each step on the sample's own score, the label's logit ±Σ x_i over the kept features
  (SoCo's per-sample "PredScore" indicator). With dataset accuracy as the indicator the experiment cannot
  work: the top 2 % of a sample's Shapley features already classify it correctly, so accuracy is 1 from
  the first step and every later step is judged false. Both indicators are reported.
- Completeness uses dataset accuracy (a score of exactly 0 counts as wrong: σ is undefined there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import functional
from .maps import normalise
from .modify import MODES, SCHEMES, modify

DIM, SAMPLES = 200, 1000
VARIANTS = ("ground_truth", *(f"{mode}_{scheme}" for mode in MODES for scheme in SCHEMES))


@dataclass(frozen=True)
class Curves:
    """One trial's curves for one attribution variant: soundness per step under each indicator, and the
    completeness (accuracy drop) per threshold."""

    soundness: np.ndarray  # [T], per-sample score indicator
    soundness_accuracy: np.ndarray  # [T], dataset accuracy indicator
    completeness: np.ndarray  # [thresholds]


def ground_truth(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign `[N]` of each sample's class, +1 or −1; its Shapley attribution clipped at 0 `[N, D]`)."""
    sign = torch.where(x.sum(dim=1) > 0, 1.0, -1.0).to(x.dtype)
    return sign, (sign[:, None] * x).clamp(min=0)


def variant_maps(attribution: torch.Tensor, variant: str, generator: torch.Generator) -> torch.Tensor:
    """The normalised ground truth, or its Remove/Introduce modification named `variant`."""
    maps = normalise(attribution)
    if variant == "ground_truth":
        return maps
    mode, scheme = variant.split("_")
    return modify(maps, mode, scheme, generator=generator)


def evaluate(x: torch.Tensor, sign: torch.Tensor, maps: torch.Tensor, generator: torch.Generator) -> Curves:
    """Soundness and completeness of `maps` for the linear model on samples `x`."""
    contribution = sign[:, None] * x  # each feature's share of the label's logit
    order = functional.ascending_order(maps, generator)
    ratios = functional.SOUNDNESS_RATIOS
    score = functional.kept_sums(contribution, order, ratios)  # [T, N], the label's logit at each step
    accounting = functional.soundness_accounting(maps, order, ratios)
    by_score = functional.soundness_ratios(accounting, functional.false_score_steps(score))
    correct = (score > 0).sum(axis=1)
    by_accuracy = functional.soundness_ratios(accounting, functional.false_steps(correct, len(x)))
    drops = []
    for threshold in functional.COMPLETENESS_THRESHOLDS:
        removed = functional.removed_by_value(maps, threshold)
        remaining = torch.where(removed, 0.0, contribution).sum(dim=1)
        drops.append(1.0 - float((remaining > 0).double().mean()))  # the full input is always right
    return Curves(
        functional.nanmean(by_score, axis=1), functional.nanmean(by_accuracy, axis=1), np.array(drops)
    )


def run_trials(trials: int, seed: int, *, samples: int = SAMPLES, dim: int = DIM) -> dict[str, list[Curves]]:
    """`trials` repetitions, each with fresh data and fresh random modifications: the curves per variant."""
    curves: dict[str, list[Curves]] = {v: [] for v in VARIANTS}
    for trial in range(trials):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + trial)
        x = torch.randn(samples, dim, generator=generator, dtype=torch.float64)
        sign, attribution = ground_truth(x)
        for variant in VARIANTS:
            curves[variant].append(
                evaluate(x, sign, variant_maps(attribution, variant, generator), generator)
            )
    return curves
