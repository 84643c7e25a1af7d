"""Robustness (Yeh et al. 2019's sensitivity, Alvarez-Melis & Jaakkola 2018's local Lipschitz estimate) and
input invariance (Kindermans et al. 2017) as attribench `Metric`s: thin classes around `sensitivity`, on
maps of variants that the runner computes and stores (`perturbations`).

The three robustness metrics explain the same perturbations, `UniformNoise(radius, draw=j)` for
j < samples: run one after another on a store, the second and third compute no new attribution.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from itertools import repeat
from typing import Any, ClassVar

import numpy as np
import torch

from attribench_core import (
    AttributionRequest,
    Metric,
    MetricContext,
    Param,
    ParameterError,
    Result,
    UsageProblem,
    mean_result,
    perturbation_generators,
)

from . import sensitivity
from .perturbations import ConstantShift, ShiftAbsorbed, UniformNoise

NONFINITE = "non-finite attribution"
ZERO_MAP = "all-zero map"
LOGIT_TOLERANCE = 1e-3  # of the largest |logit|: float32 rounding of b − W·c stays far below


def _scored(nonfinite: np.ndarray, scores: np.ndarray, skipped: Counter[str]) -> np.ndarray:
    """The samples to keep: a finite map and a score (NaN where the map of x was all zero); the others are
    counted in `skipped` by reason."""
    zero = np.isnan(scores) & ~nonfinite
    skipped[NONFINITE] += int(nonfinite.sum())
    skipped[ZERO_MAP] += int(zero.sum())
    return ~nonfinite & ~zero


def _reasons(skipped: Counter[str]) -> Counter[str]:
    return Counter({reason: count for reason, count in skipped.items() if count})


class PerturbationMetric(Metric):
    """A number per sample from the map of x and the maps of `samples` points drawn uniformly in the L∞ ball
    of `radius` around x, each explained for the unperturbed prediction. Lower is more robust. Samples with
    a non-finite map (of x or of any draw) are skipped with that reason. By default on the core toy pair."""

    category = "robustness"
    higher_is_better = False
    dataset = "core.toy"
    model = "core.toy_cnn"
    num_imgs = 32
    options = (
        Param("radius", 0.2, "half-width of the uniform noise per value (L∞ ball)", float, greater_than=0),
        Param("samples", 10, "perturbations drawn per image", int, minimum=1, maximum=1000),
    )
    score_name: ClassVar[str]
    needs_inputs: ClassVar[bool] = False

    def draws(self) -> list[UniformNoise]:
        return [UniformNoise(self.opts["radius"], draw=j) for j in range(self.opts["samples"])]

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        index = tuple(map(int, ctx.index))
        plain = AttributionRequest(ctx.dataset_name, ctx.model_name, index, self.target)
        return [plain] + [
            AttributionRequest(ctx.dataset_name, ctx.model_name, index, self.target, perturbation=p)
            for p in self.draws()
        ]

    @abstractmethod
    def score(self, ratios: np.ndarray) -> np.ndarray:
        """`[N, B]` per-draw ratios → `[B]` per-sample values."""

    @abstractmethod
    def ratio(
        self, reference: Any, variant: Any, draw: UniformNoise, inputs: torch.Tensor | None, seed: int
    ) -> np.ndarray:
        """`[B]` the ratio of one draw from the stored maps of x and of x' (and, if `needs_inputs`, x on
        the device and the run seed, to draw x' again)."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        values, index, skipped = [], [], Counter()
        for reference, variants, inputs in self._batches(ctx, explainer):
            bad = reference.nonfinite | np.any([v.nonfinite for v in variants], axis=0)
            ratios = np.stack(
                [
                    self.ratio(reference, v, draw, inputs, ctx.seed)
                    for v, draw in zip(variants, self.draws(), strict=True)
                ]
            )
            scores = self.score(ratios)
            keep = _scored(bad, scores, skipped)
            values.append(scores[keep])
            index.append(reference.index[keep])
        return mean_result(
            self.score_name,
            np.concatenate(values),
            np.concatenate(index),
            ctx.rng(f"bootstrap/{explainer}"),
            _reasons(skipped),
        )

    def _batches(self, ctx: MetricContext, explainer: str) -> Iterator[tuple]:
        """(stored maps of x, stored maps of each draw, x on the device or None), batch by batch."""
        streams = [ctx.stored_batches(explainer)]
        streams += [ctx.stored_batches(explainer, perturbation=p) for p in self.draws()]
        inputs = (b.images for b in ctx.device_batches()) if self.needs_inputs else repeat(None)
        for (reference, *variants), images in zip(zip(*streams, strict=True), inputs, strict=False):
            yield reference, variants, images


class Sensitivity(PerturbationMetric):
    """Yeh et al. 2019's sensitivity, normalised: ‖Φ(x) − Φ(x')‖ / ‖Φ(x)‖ (Frobenius norms) per draw, then
    reduced over the draws; a sample whose map is all zero is skipped with that reason."""

    def ratio(self, reference, variant, draw, inputs, seed) -> np.ndarray:
        return sensitivity.relative_change(reference.attribution, variant.attribution)


class MaxSensitivity(Sensitivity):
    """The largest relative change of the map over the draws (Yeh et al. 2019, SENS_MAX)."""

    score_name = "max_sensitivity"

    def score(self, ratios: np.ndarray) -> np.ndarray:
        return sensitivity.max_sensitivity(ratios)


class AvgSensitivity(Sensitivity):
    """The mean relative change of the map over the draws (Yeh et al. 2019's average sensitivity)."""

    score_name = "avg_sensitivity"

    def score(self, ratios: np.ndarray) -> np.ndarray:
        return sensitivity.avg_sensitivity(ratios)


class LocalLipschitz(PerturbationMetric):
    """Alvarez-Melis & Jaakkola 2018's local Lipschitz estimate: max over the draws of
    ‖Φ(x) − Φ(x')‖₂ / ‖x − x'‖₂, on the same uniform draws as the sensitivity metrics (their paper samples
    a ball around x; Quantus's `LocalLipschitzEstimate` uses Gaussian noise by default)."""

    score_name = "local_lipschitz"
    needs_inputs = True

    def ratio(self, reference, variant, draw, inputs, seed) -> np.ndarray:
        perturbed = draw.perturb(inputs, perturbation_generators(seed, draw, reference.index))
        return sensitivity.lipschitz_ratio(
            reference.attribution, variant.attribution, inputs.cpu().numpy(), perturbed.cpu().numpy()
        )

    def score(self, ratios: np.ndarray) -> np.ndarray:
        return sensitivity.max_sensitivity(ratios)


class InputInvariance(Metric):
    """Kindermans et al. 2017's input invariance: the model f' whose first layer absorbs a constant shift c
    of the input (f'(x + c) = f(x), `ShiftAbsorbed`) explained at x + c must give the map of f at x. Per
    sample 1 when ‖Φ_f(x) − Φ_f'(x + c)‖ / ‖Φ_f(x)‖ ≤ `tolerance`, else 0 (Quantus's `InputInvariance`
    asks every value to be close instead, `np.isclose(atol=1e-4)`, which depends on the maps' scale); the
    headline is the fraction of invariant samples, higher is better, and `relative_change` their mean
    change. Refused when the pair's logits differ on the evaluated images (a model doing more than a
    `Normalize` before its first weighted layer). By default on the core toy pair."""

    category = "axiomatic"
    higher_is_better = True
    dataset = "core.toy"
    model = "core.toy_cnn"
    num_imgs = 32
    options = (
        Param("shift", -1.0, "constant c added to every input value (≠ 0)", float, minimum=-10, maximum=10),
        Param("tolerance", 1e-3, "largest relative change of an invariant map", float, greater_than=0),
    )

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.opts["shift"] == 0:
            raise ParameterError("Option 'shift' must be non-zero: a shift of 0 tests nothing.")
        self.shifted_input = ConstantShift(self.opts["shift"])
        self.shifted_model = ShiftAbsorbed(self.opts["shift"])

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        self.check_pair(ctx)
        index = tuple(map(int, ctx.index))
        plain = AttributionRequest(ctx.dataset_name, ctx.model_name, index, self.target)
        pair = AttributionRequest(
            ctx.dataset_name,
            ctx.model_name,
            index,
            self.target,
            perturbation=self.shifted_input,
            alteration=self.shifted_model,
        )
        return [plain, pair]

    def check_pair(self, ctx: MetricContext) -> None:
        """Refuse a model for which f'(x + c) ≠ f(x) on the evaluated images (before anything is computed)."""
        model = ctx.load_model(ctx.model_name)
        shifted = self.shifted_model.alter(copy.deepcopy(model), torch.Generator())
        worst, scale = 0.0, 1.0
        with torch.no_grad():
            for batch in ctx.device_batches():
                logits = model(batch.images)
                gap = (shifted(self.shifted_input.perturb(batch.images, [])) - logits).abs().max()
                worst, scale = max(worst, float(gap)), max(scale, float(logits.abs().max()))
        if not worst <= LOGIT_TOLERANCE * scale:
            raise UsageProblem(
                f"Input invariance cannot test model {ctx.model_name}: with its first weighted layer's bias"
                f" shifted by {self.opts['shift']:g}, its logits on the shifted images differ by up to"
                f" {worst:.3g} (largest |logit| {scale:.3g}); it must see the input (or a Normalize of it)"
                " before that layer."
            )

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        changes, index, skipped = [], [], Counter()
        pairs = zip(
            ctx.stored_batches(explainer),
            ctx.stored_batches(explainer, perturbation=self.shifted_input, alteration=self.shifted_model),
            strict=True,
        )
        for reference, shifted in pairs:
            bad = reference.nonfinite | shifted.nonfinite
            change = sensitivity.relative_change(reference.attribution, shifted.attribution)
            keep = _scored(bad, change, skipped)
            changes.append(change[keep])
            index.append(reference.index[keep])
        change = np.concatenate(changes)
        result = mean_result(
            "input_invariance",
            sensitivity.invariant(change, self.opts["tolerance"]),
            np.concatenate(index),
            ctx.rng(f"bootstrap/{explainer}"),
            _reasons(skipped),
            rate=True,
        )
        result.values["relative_change"] = float(change.mean()) if len(change) else float("nan")
        result.per_sample["relative_change"] = change
        return result
