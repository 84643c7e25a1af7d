"""The checks as attribench `Metric`s: thin classes around `functional`, one value per sample, their mean
with a bootstrap interval."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from typing import ClassVar

import numpy as np

from attribench_core import Metric, MetricContext, Result, mean_result

from . import functional

NONFINITE = "non-finite attribution"
ZERO_MAP = "all-zero map"


class ComplexityMetric(Metric):
    """A number per map saying how concentrated it is, computed from |a| summed over channels per pixel.

    Samples whose attribution is non-finite, or all zero (no distribution to measure), are skipped with
    that reason. By default on the core toy pair."""

    category = "complexity"
    dataset = "core.toy"
    model = "core.toy_cnn"
    score_name: ClassVar[str]

    @abstractmethod
    def score(self, magnitudes: np.ndarray) -> np.ndarray:
        """Per-sample values `[B]` of `[B, H·W]` non-negative, not all-zero magnitudes."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        values, index, skipped = [], [], Counter()
        for stored in ctx.stored_batches(explainer):
            magnitudes = functional.pixel_magnitudes(np.nan_to_num(stored.attribution))
            zero = functional.all_zero(magnitudes) & ~stored.nonfinite
            skipped[NONFINITE] += int(stored.nonfinite.sum())
            skipped[ZERO_MAP] += int(zero.sum())
            keep = ~stored.nonfinite & ~zero
            values.append(self.score(magnitudes[keep]))
            index.append(stored.index[keep])
        skipped = Counter({reason: count for reason, count in skipped.items() if count})
        return mean_result(
            self.score_name,
            np.concatenate(values),
            np.concatenate(index),
            ctx.rng(f"bootstrap/{explainer}"),
            skipped,
        )


class Sparseness(ComplexityMetric):
    """Gini index of the map's pixel magnitudes (Chalasani et al. 2020): 0 when every pixel is equally
    important, towards 1 when one pixel holds it all. Higher is sparser, which is better."""

    higher_is_better = True
    score_name = "sparseness"

    def score(self, magnitudes: np.ndarray) -> np.ndarray:
        return functional.gini(magnitudes)


class Complexity(ComplexityMetric):
    """Entropy of the pixels' fractional contribution (Bhatt et al. 2020): log(H·W) for a flat map, 0 when
    one pixel holds it all. Lower is simpler, which is better."""

    higher_is_better = False
    score_name = "complexity"

    def score(self, magnitudes: np.ndarray) -> np.ndarray:
        return functional.entropy(magnitudes)
