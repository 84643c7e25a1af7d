"""The core's localisation metrics: thin classes around `localisation.py`, usable on any dataset whose
samples carry regions with roles (the primary regions are the ground truth)."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from typing import ClassVar

import numpy as np
import torch

from attribench_core.builtin import localisation
from attribench_core.metric import Metric, MetricContext
from attribench_core.params import Param
from attribench_core.result import Result, mean_of_rates_ci, mean_result

AVERAGES = ("images", "categories")
_REDUCTION = Param(
    "reduction", "positive", "how [C,H,W] attributions become a 2-D map", str, localisation.REDUCTIONS
)


class LocalisationMetric(Metric):
    """Per-sample score of the 2-D map against the union of the sample's primary regions; mean + interval.

    Samples are skipped, with a reason, when their attribution is non-finite or they have no primary
    region. An all-zero map points nowhere (Grad-CAM after its ReLU can be): it scores 0, so that a method
    gains nothing by abstaining; `all_zero_maps` counts them and `<score>_excluding_all_zero` is the mean
    over the other maps, the value as it was before they were counted.
    """

    higher_is_better = True
    category = "ground_truth"
    dataset = "core.toy"
    model = "core.toy_cnn"
    requires = ("regions",)
    options: ClassVar[tuple[Param, ...]] = (_REDUCTION,)
    score_name: ClassVar[str]
    rate: ClassVar[bool] = False  # per-sample scores are 0/1: a Wilson interval

    @abstractmethod
    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Per-sample scores `[B]` of 2-D maps against masks."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        values, index, labels, zero, skipped = [], [], [], [], Counter()
        for batch, stored in ctx.attribution_batches(explainer):
            finite = torch.from_numpy(~stored.nonfinite)
            maps = localisation.to_map(
                torch.from_numpy(stored.attribution).nan_to_num(), self.opts["reduction"]
            )
            masks = batch.role_mask("primary")
            has_region = masks.flatten(1).any(1)
            skipped["non-finite attribution"] += int((~finite).sum())
            skipped["no primary region"] += int((finite & ~has_region).sum())
            keep = finite & has_region
            all_zero = ~(maps[keep].flatten(1) != 0).any(1)
            values.append(torch.where(all_zero, 0.0, self.score(maps[keep], masks[keep])).numpy())
            zero.append(all_zero.numpy())
            index.append(batch.index[keep.numpy()])
            labels.append(batch.labels[keep].numpy())
        values, zero = np.concatenate(values), np.concatenate(zero)
        skipped = Counter({k: v for k, v in skipped.items() if v})
        result = mean_result(
            self.score_name,
            values,
            np.concatenate(index),
            ctx.rng(f"bootstrap/{explainer}"),
            skipped,
            rate=self.rate,
        )
        result.values["all_zero_maps"] = float(zero.sum())
        scored = np.isfinite(values)  # the samples `mean_result` kept, in its order
        kept = values[scored & ~zero]
        excluding = float(kept.mean()) if len(kept) else float("nan")
        result.values[f"{self.score_name}_excluding_all_zero"] = excluding
        return self.summarise(ctx, explainer, result, np.concatenate(labels)[scored])

    def summarise(self, ctx: MetricContext, explainer: str, result: Result, labels: np.ndarray) -> Result:
        """Hook for a metric whose headline is not the mean over images (the default: `result` as is);
        `labels` are the classes of the samples in `result.per_sample`."""
        return result


class RelevanceMass(LocalisationMetric):
    """Relevance inside the primary regions / total relevance."""

    score_name = "relevance_mass"

    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return localisation.relevance_mass(maps, masks)


class RelevanceRank(LocalisationMetric):
    """Share of the K most relevant pixels inside the primary regions, K = their area."""

    score_name = "relevance_rank"

    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return localisation.relevance_rank(maps, masks)


class PointingGame(LocalisationMetric):
    """1 if the most relevant pixel lies in the primary regions (within `tolerance` pixels), else 0.

    `average=images` (default): the hit rate over images, with Wilson's interval. `average=categories`:
    the mean of the per-category hit rates, as Zhang et al. 2018 report it, with Wilson's intervals
    combined by MOVER (`mean_of_rates_ci`); the per-image rate stays in `pointing_game_over_images`."""

    score_name = "pointing_game"
    rate = True
    options = (
        _REDUCTION,
        Param("tolerance", 0, "pixels of slack around the regions (square)", int, minimum=0),
        Param("average", "images", "mean over images, or over categories (Zhang et al.)", str, AVERAGES),
    )

    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return localisation.pointing_game(maps, masks, self.opts["tolerance"])

    def summarise(self, ctx: MetricContext, explainer: str, result: Result, labels: np.ndarray) -> Result:
        if self.opts["average"] == "images" or not result.n:
            return result
        hits = result.per_sample[self.score_name]
        by_category = localisation.mean_over_categories(hits, labels)
        result.values["pointing_game_over_images"] = result.value
        result.values[self.score_name] = result.value = by_category
        categories, code, trials = np.unique(labels, return_inverse=True, return_counts=True)
        result.values["categories"] = float(len(categories))
        result.uncertainty = mean_of_rates_ci(np.bincount(code, weights=hits), trials)
        return result
