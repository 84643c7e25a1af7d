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
from attribench_core.result import Result, mean_result

_REDUCTION = Param(
    "reduction", "positive", "how [C,H,W] attributions become a 2-D map", str, localisation.REDUCTIONS
)


class LocalisationMetric(Metric):
    """Per-sample score of the 2-D map against the union of the sample's primary regions; mean + CI.

    Samples are skipped, with a reason, when their attribution is non-finite, they have no primary
    region, or their map is all zero (it points nowhere: Grad-CAM after its ReLU can be).
    """

    higher_is_better = True
    category = "ground_truth"
    dataset = "core.toy"
    model = "core.toy_cnn"
    requires = ("regions",)
    options: ClassVar[tuple[Param, ...]] = (_REDUCTION,)
    score_name: ClassVar[str]

    @abstractmethod
    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Per-sample scores `[B]` of 2-D maps against masks."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        values, index, skipped = [], [], Counter()
        for batch, stored in ctx.attribution_batches(explainer):
            finite = torch.from_numpy(~stored.nonfinite)
            maps = localisation.to_map(
                torch.from_numpy(stored.attribution).nan_to_num(), self.opts["reduction"]
            )
            masks = batch.role_mask("primary")
            has_region = masks.flatten(1).any(1)
            nonzero = (maps.flatten(1) != 0).any(1)
            skipped["non-finite attribution"] += int((~finite).sum())
            skipped["no primary region"] += int((finite & ~has_region).sum())
            skipped["all-zero map"] += int((finite & has_region & ~nonzero).sum())
            keep = finite & has_region & nonzero
            values.append(self.score(maps[keep], masks[keep]).numpy())
            index.append(batch.index[keep.numpy()])
        skipped = Counter({k: v for k, v in skipped.items() if v})
        return mean_result(
            self.score_name,
            np.concatenate(values),
            np.concatenate(index),
            ctx.rng(f"bootstrap/{explainer}"),
            skipped,
        )


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
    """1 if the most relevant pixel lies in the primary regions (within `tolerance` pixels), else 0."""

    score_name = "pointing_game"
    options = (_REDUCTION, Param("tolerance", 0, "pixels of slack around the regions (square)", int))

    def score(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return localisation.pointing_game(maps, masks, self.opts["tolerance"])
