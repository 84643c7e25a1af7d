"""The randomisation checks: does the map change when the model's weights (Adebayo et al. 2018) or the
explained class (Sixt et al. 2020) are randomised? Per-sample similarities of a map and its variant's;
lower similarity is better."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attribench_core import (
    AttributionRequest,
    Curve,
    Metric,
    MetricContext,
    Param,
    Result,
    ResultTable,
    mean_result,
)

from .layers import RandomiseLayers, parameter_layers
from .metrics import NONFINITE, ZERO_MAP
from .similarity import pixel_maps, spearman, ssim

CONSTANT_MAP = "constant map (no rank correlation)"
SSIM_PERCENTILE = 99.0
MODES = ("cascading", "independent")
X_NAME = "layers randomised"


def normalise_for_ssim(maps: np.ndarray, percentile: float = SSIM_PERCENTILE) -> np.ndarray:
    """`[B,H,W]` maps → [0, 1]: (m − min) / (p − min) clipped at 1, p the map's `percentile`-th percentile,
    the normalisation of |a| maps that Adebayo et al. (2018) display and compare: a few extreme pixels do
    not flatten the rest. A map whose percentile equals its minimum (a constant map) becomes all zero."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(axis=1)[:, None, None]
    span = np.percentile(flat, percentile, axis=1)[:, None, None] - low
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (maps - low) / span, 0.0)
    return np.clip(scaled, 0.0, 1.0)


def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of two `[B,C,H,W]` batches' |a| per pixel."""
    return spearman(pixel_maps(a, absolute=True), pixel_maps(b, absolute=True))


def spearman_signed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of two `[B,C,H,W]` batches' signed a per pixel."""
    return spearman(pixel_maps(a, absolute=False), pixel_maps(b, absolute=False))


def ssim_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of two `[B,C,H,W]` batches' |a| per pixel, each map normalised by `normalise_for_ssim`."""
    return ssim(
        normalise_for_ssim(pixel_maps(a, absolute=True)), normalise_for_ssim(pixel_maps(b, absolute=True))
    )


MEASURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "spearman_abs": spearman_abs,
    "spearman": spearman_signed,
    "ssim": ssim_abs,
}


def cut_points(num_layers: int, steps: int) -> list[int]:
    """How many layers are randomised at each step: every count 1..L (`steps` 0 or ≥ L), else `steps`
    counts evenly spread, ⌈i·L / steps⌉ for i = 1..steps, the last one all L layers."""
    if steps == 0 or steps >= num_layers:
        return list(range(1, num_layers + 1))
    return [-(-i * num_layers // steps) for i in range(1, steps + 1)]


@dataclass(frozen=True)
class Step:
    """Step `k` of the test: `layer` is the k-th layer from the logits down, `alteration` what it
    randomises (that layer and those above it when cascading, that layer alone when independent)."""

    k: int
    layer: str
    alteration: RandomiseLayers


def plan_steps(layers: list[str], mode: str, steps: int) -> list[Step]:
    """The steps over `layers` (in forward order), from the top (the logits) down."""
    top_down = layers[::-1]
    return [
        Step(
            k,
            top_down[k - 1],
            RandomiseLayers(tuple(top_down[:k]) if mode == "cascading" else (top_down[k - 1],)),
        )
        for k in cut_points(len(layers), steps)
    ]


@dataclass
class Comparison:
    """Per-sample similarities of an explainer's maps and a variant's: `values[measure]` in `index` order,
    `reasons[i]` why sample i cannot be compared ("" where it can)."""

    index: np.ndarray
    values: dict[str, np.ndarray]
    reasons: np.ndarray


def compare(ctx: MetricContext, explainer: str, measures: tuple[str, ...], **variant: Any) -> Comparison:
    """The run's maps of `explainer` against those of `variant` (`target=` / `alteration=`), batch by
    batch. A sample is not compared when either map is non-finite, when its map is all zero (nothing to
    compare), or when a measure is undefined (a constant map has no ranks)."""
    index, reasons, values = [], [], {name: [] for name in measures}
    plain = ctx.stored_batches(explainer)
    for original, other in zip(plain, ctx.stored_batches(explainer, **variant), strict=True):
        a, b = np.nan_to_num(original.attribution), np.nan_to_num(other.attribution)
        found = {name: MEASURES[name](a, b) for name in measures}
        undefined = ~np.isfinite(np.stack(list(found.values()))).all(axis=0)
        zero = ~pixel_maps(a, absolute=True).reshape(len(a), -1).any(axis=1)
        reasons.append(
            np.select(
                [original.nonfinite | other.nonfinite, zero, undefined],
                [NONFINITE, ZERO_MAP, CONSTANT_MAP],
                "",
            )
        )
        index.append(original.index)
        for name, value in found.items():
            values[name].append(value)
    return Comparison(
        np.concatenate(index),
        {name: np.concatenate(value) for name, value in values.items()},
        np.concatenate(reasons),
    )


def first_reasons(comparisons: list[Comparison]) -> np.ndarray:
    """Per sample, the first reason any of `comparisons` (of the same samples) gives not to compare it."""
    reasons = comparisons[0].reasons
    for comparison in comparisons[1:]:
        reasons = np.where(reasons == "", comparison.reasons, reasons)
    return reasons


def column_means(matrix: np.ndarray) -> list[float]:
    """The mean of each row of `[steps, samples]` over the samples; NaN when there are none."""
    return matrix.mean(axis=1).tolist() if matrix.shape[1] else [float("nan")] * len(matrix)


class RandomisationCheck(Metric):
    """A randomisation check on the core toy pair by default: lower similarity is better (the map
    depends on what was randomised)."""

    higher_is_better = False
    category = "randomisation"
    dataset = "core.toy"
    model = "core.toy_cnn"

    def attribution_request(self, ctx: MetricContext, **variant: Any) -> AttributionRequest:
        """The run's images on its pair: plain maps, or a variant's (`target=`, `alteration=`)."""
        return AttributionRequest(ctx.dataset_name, ctx.model_name, tuple(map(int, ctx.index)), **variant)


class MPRT(RandomisationCheck):
    """Model parameter randomisation test (Adebayo et al. 2018): the layers that own parameters are
    re-initialised from the logits down, cascading (step k: the top k layers) or independently (step k:
    the k-th layer from the top alone), and each step's maps compared with the trained model's by the
    Spearman correlation of |a| and of a, and SSIM. The headline is the mean Spearman of |a| over steps and
    samples."""

    options = (
        Param(
            "mode",
            "cascading",
            "cascading: the top k layers at step k; independent: layer k alone",
            str,
            MODES,
        ),
        Param(
            "steps",
            0,
            "number of steps, evenly spread over the layers, the last with all of them randomised "
            "(0: one step per layer)",
            int,
            minimum=0,
        ),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._steps: dict[str, list[Step]] = {}

    def steps(self, ctx: MetricContext) -> list[Step]:
        """The run's steps over its model's layers, found once by hooks on one forward pass."""
        if ctx.model_name not in self._steps:
            model = ctx.load_model(ctx.model_name)
            images = next(ctx.device_batches(ctx.index[:1])).images
            layers = parameter_layers(model, images)
            self._steps[ctx.model_name] = plan_steps(layers, self.opts["mode"], self.opts["steps"])
        return self._steps[ctx.model_name]

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        steps = self.steps(ctx)
        return [
            self.attribution_request(ctx),
            *(self.attribution_request(ctx, alteration=s.alteration) for s in steps),
        ]

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        steps = self.steps(ctx)
        comparisons = [compare(ctx, explainer, tuple(MEASURES), alteration=s.alteration) for s in steps]
        reasons = first_reasons(comparisons)
        keep = reasons == ""
        matrices = {name: np.stack([c.values[name][keep] for c in comparisons]) for name in MEASURES}
        result = mean_result(
            "mean_spearman_abs",
            matrices["spearman_abs"].mean(axis=0),
            comparisons[0].index[keep],
            ctx.rng(f"bootstrap/{explainer}"),
            Counter(reasons[~keep].tolist()),
        )
        x = [float(s.k) for s in steps]
        for name, matrix in matrices.items():
            result.curves[name] = Curve(X_NAME, x, column_means(matrix))
        for name in ("spearman", "ssim"):
            result.per_sample[f"mean_{name}"] = matrices[name].mean(axis=0)
            result.values[f"mean_{name}"] = float(np.mean(result.per_sample[f"mean_{name}"]))
        result.tables["layers"] = ResultTable(["step", "layer"], [[float(s.k), s.layer] for s in steps])
        return result


class RandomLogit(RandomisationCheck):
    """Random logit test (Sixt et al. 2020): the similarity of the map of the predicted class and the map
    of a class drawn at random among the others (per image, from the run seed). SSIM of the normalised |a|
    maps by default, as Quantus's RandomLogit; Spearman of |a| or of a as options."""

    options = (Param("similarity", "ssim", "how the two maps are compared", str, tuple(MEASURES)),)

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        return [self.attribution_request(ctx), self.attribution_request(ctx, target="random_other")]

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        measure = self.opts["similarity"]
        comparison = compare(ctx, explainer, (measure,), target="random_other")
        keep = comparison.reasons == ""
        return mean_result(
            measure,
            comparison.values[measure][keep],
            comparison.index[keep],
            ctx.rng(f"bootstrap/{explainer}"),
            Counter(comparison.reasons[~keep].tolist()),
        )
