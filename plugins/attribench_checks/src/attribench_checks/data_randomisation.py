"""Adebayo et al. (2018)'s data randomisation test: how alike are the maps of a model and of its twin
trained by the same recipe on permuted labels, on the same test images? A map that explains what the model
learned should differ; lower similarity is better. The twin is a core model variant (`PermutedLabels`),
trained once and cached; its check (it fits its permuted training labels and is at chance on the test set)
is reported beside the similarities."""

from __future__ import annotations

from collections import Counter

import numpy as np

from attribench_core import (
    AttributionRequest,
    Metric,
    MetricContext,
    Param,
    PermutedLabels,
    Result,
    mean_result,
)

from .metrics import NONFINITE, ZERO_MAP
from .randomisation import CONSTANT_MAP, MEASURES
from .similarity import pixel_maps

HEADLINE = "spearman_abs"


def map_similarities(real: np.ndarray, twin: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair of `[B,C,H,W]` maps: the measures of checks.mprt (Spearman of |a| and of a per pixel, SSIM of
    the normalised |a| maps; Adebayo et al. 2018)."""
    return {name: measure(real, twin) for name, measure in MEASURES.items()}


def skip_reasons(real: np.ndarray, nonfinite: np.ndarray, similarities: dict[str, np.ndarray]) -> np.ndarray:
    """Why each pair cannot be compared ("" where it can): a non-finite map (`nonfinite`, either model's),
    an all-zero real map (nothing to compare), or an undefined measure (a constant map has no ranks)."""
    zero = ~pixel_maps(np.nan_to_num(real), absolute=True).reshape(len(real), -1).any(axis=1)
    undefined = ~np.isfinite(np.stack(list(similarities.values()))).all(axis=0)
    return np.select([nonfinite, zero, undefined], [NONFINITE, ZERO_MAP, CONSTANT_MAP], "")


class DataRandomisation(Metric):
    """Similarity of an explainer's maps on the model and on its twin trained on permuted labels (Adebayo
    et al. 2018): the mean per-sample Spearman correlation of |a| is the headline, with Spearman of a and
    SSIM beside it, and the twin's check (training and test accuracy, chance, passed). Lower is better. Each
    model's map explains its own prediction."""

    higher_is_better = False
    category = "randomisation"
    dataset = "core.toy"
    model = "core.toy_cnn"
    num_imgs = 100
    options = (
        Param(
            "epochs",
            0,
            "training epochs of the random-label twin (0: the model's recipe's); memorising random labels "
            "may take longer",
            int,
            minimum=0,
            maximum=10_000,
        ),
    )

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.training = PermutedLabels(self.opts["epochs"] or None)

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        index = tuple(map(int, ctx.index))
        return [
            AttributionRequest(ctx.dataset_name, ctx.model_name, index, self.target),
            AttributionRequest(ctx.dataset_name, ctx.model_name, index, self.target, training=self.training),
        ]

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        index, reasons, found = [], [], {}
        pairs = zip(
            ctx.stored_batches(explainer), ctx.stored_batches(explainer, training=self.training), strict=True
        )
        for real, twin in pairs:
            similarities = map_similarities(np.nan_to_num(real.attribution), np.nan_to_num(twin.attribution))
            reasons.append(skip_reasons(real.attribution, real.nonfinite | twin.nonfinite, similarities))
            index.append(real.index)
            for name, values in similarities.items():
                found.setdefault(name, []).append(values)
        why = np.concatenate(reasons)
        keep = why == ""
        values = {name: np.concatenate(parts)[keep] for name, parts in found.items()}
        skipped = Counter(why[~keep].tolist())
        result = mean_result(
            HEADLINE,
            values[HEADLINE],
            np.concatenate(index)[keep],
            ctx.rng(f"bootstrap/{explainer}"),
            skipped,
        )
        for name in ("spearman", "ssim"):
            result.values[name] = float(values[name].mean()) if keep.any() else float("nan")
            result.per_sample[name] = values[name]
        result.values.update(self.twin_check(ctx))
        return result

    def twin_check(self, ctx: MetricContext) -> dict[str, float]:
        """The twin's check as values of the result: its accuracies, chance, and passed (1.0 or 0.0)."""
        check = ctx.model_check(ctx.model_name, self.training)
        assert check is not None  # a trained twin is always checked
        twin = {f"twin_{name}": value for name, value in check.summary.items()}
        return {**twin, "twin_check_passed": float(check.passed)}
