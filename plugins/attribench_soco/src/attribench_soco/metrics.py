"""SoCo's metrics as attribench `Metric`s: soundness and completeness (Li, Zhang et al. 2024) and the
order-based comparators ROAD (MoRF and LeRF), the paper's accuracy Deletion and Insertion, and Petsiuk et
al.'s Deletion and Insertion (RISE, BMVC 2018), on any (dataset, model) pair (by default BAM's object model).

Each reads the stored attributions, reduces them to SoCo's non-negative 2-D maps (`maps.saliency`), sweeps
the removal steps batch by batch on the device (`sweeps.sweep`), and turns the per-image outcomes into
the dataset-level curves the paper plots (`functional`). The headline value of each is attribench's
summary of its curve (the mean over the sweep), not a figure of the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from attribench_core import (
    Curve,
    Metric,
    MetricContext,
    Param,
    Result,
    bootstrap_interval,
    derive_seed,
    mean_result,
    wilson_ci,
)

from . import functional
from .maps import saliency
from .sweeps import CANVASES, Outcomes, sweep

# the default (dataset, model) pair of each --on value
PAIRS = {
    "smerf": ("smerf.simple_fr", "smerf.simple_fr"),
    "bam": ("bam.obj", "bam.obj"),
}
DEFAULT_PAIR = "bam"  # on SMERF's black background a 0 fill changes nothing and IG's maps are mostly 0
OPTIONS = (
    Param(
        "on",
        DEFAULT_PAIR,
        "default pair: bam (object model) or smerf (Simple-FR CNN); your own: --images DIR --model ...",
        str,
        tuple(PAIRS),
    ),
    Param("preset", "default", "SMERF image counts with --on smerf: default, paper or tiny", str),
    Param("noise", 0.01, "std of the imputation noise, in the model's input units", float, minimum=0),
)
ZERO_MAP = "all-zero attribution map"
NONFINITE = "non-finite attribution"

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # maps [B,H,W] → modified maps


@dataclass
class Evaluated:
    """A sweep over the evaluated images: outcomes per step and image, plus what the metric kept aside."""

    outcomes: Outcomes
    index: np.ndarray
    extra: list[Any]
    skipped: dict[str, int]


@dataclass(frozen=True)
class SweepWork:
    """One batch of a sweep as the run's executor hands it to a worker: the metric (class and options), the
    batch's first dataset index (its seed), the images swept, their maps `[B,H,W]`, the classes the maps
    explain (stored with the attributions) and the map transform (a picklable function, e.g. a
    `functools.partial`, or None). The worker loads the images itself."""

    metric: type[SocoMetric]
    options: dict[str, Any]
    first: int
    index: np.ndarray
    maps: np.ndarray
    target: np.ndarray
    transform: Transform | None


@dataclass
class Swept:
    """A swept batch: outcomes `[T, B]`, the images' dataset indices, and what the metric kept aside."""

    outcomes: Outcomes
    index: np.ndarray
    aside: Any


def sweep_batch(ctx: MetricContext, work: SweepWork) -> Swept:
    """The executor's work function: sweep one batch with the metric it names."""
    return work.metric(**work.options).sweep(ctx, work)


class SocoMetric(Metric):
    """Shared by SoCo's metrics: the pair, reading and reducing the maps, and the batched sweep."""

    category = "faithfulness"
    options = OPTIONS
    num_imgs = 100
    dataset, model = PAIRS[DEFAULT_PAIR]
    fill: ClassVar[str] = "impute"
    plotted: ClassVar[str]  # the curve the paper plots, compared in Table 1

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.dataset, self.model = PAIRS[self.opts["on"]]

    def dataset_options(self) -> dict[str, Any]:
        if self.dataset.startswith("smerf.") and self.opts["preset"] != "default":
            return {"preset": self.opts["preset"]}
        return {}

    def generator(self, ctx: MetricContext, purpose: str, first: int) -> torch.Generator:
        """A CPU generator for one batch, from the seed, the purpose and the batch's first image."""
        return torch.Generator().manual_seed(derive_seed(ctx.seed, "soco", purpose, first))

    def works(self, ctx: MetricContext, explainer: str, transform: Transform | None) -> Iterator[SweepWork]:
        """One `SweepWork` per batch of stored attributions, reduced to SoCo's maps here on the driver; images
        with non-finite attributions are left out (counted by `evaluate`)."""
        for stored in ctx.stored_batches(explainer):
            keep = ~np.asarray(stored.nonfinite, dtype=bool)
            if keep.any():
                maps = saliency(torch.from_numpy(stored.attribution[keep])).numpy()
                first = int(stored.index[0])
                target = np.asarray(stored.target)[keep]
                yield SweepWork(type(self), self.opts, first, stored.index[keep], maps, target, transform)

    def evaluate(self, ctx: MetricContext, explainer: str, transform: Transform | None = None) -> Evaluated:
        """Sweep every batch of the evaluated images through the run's executor (`sweep_batch` on a worker,
        per batch), and put the outcomes side by side in image order."""
        swept = list(ctx.map(sweep_batch, self.works(ctx, explainer, transform)))
        index = [s.index for s in swept]
        dropped = len(ctx.index) - sum(len(i) for i in index)
        return Evaluated(
            Outcomes.concatenate([s.outcomes for s in swept])
            if swept
            else Outcomes(np.zeros((0, 0), bool), np.zeros((0, 0)), np.zeros((0, 0))),
            np.concatenate(index) if index else np.zeros(0, np.int64),
            [s.aside for s in swept],
            {NONFINITE: dropped} if dropped else {},
        )

    def sweep(self, ctx: MetricContext, work: SweepWork) -> Swept:
        """The sweep of one batch on the context's device: its generator (seed, metric, first image) draws
        the map transform's noise, the tie-breaking order and the imputation noise, in that order."""
        generator = self.generator(ctx, type(self).__name__, work.first)
        maps = torch.from_numpy(work.maps).to(ctx.device)
        if work.transform is not None:
            maps = work.transform(maps, generator)
        batch = ctx.dataset.batch(work.index)
        order = functional.ascending_order(maps, generator)
        removals, aside = self.steps(maps, functional.ranks(order), order)
        outcomes = sweep(
            ctx.load_model(ctx.model_name),
            batch.images.to(ctx.device),
            batch.labels.to(ctx.device),
            (r.view(maps.shape) for r in removals),
            targets=torch.as_tensor(work.target, dtype=torch.long, device=ctx.device),
            fill=self.fill,
            noise=self.opts["noise"],
            generator=generator,
        )
        return Swept(outcomes, work.index, aside)

    def steps(
        self, maps: torch.Tensor, rank: torch.Tensor, order: torch.Tensor
    ) -> tuple[Iterable[torch.Tensor], Any]:
        """The removal masks `[B, P]` of the sweep (any iterable: made as the sweep consumes them), and
        anything the metric keeps for later."""
        raise NotImplementedError

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        return self.score(ctx, explainer, self.evaluate(ctx, explainer))

    def score(self, ctx: MetricContext, explainer: str, evaluated: Evaluated) -> Result:
        raise NotImplementedError

    def curve_points(self, result: Result) -> np.ndarray:
        """The curve the paper plots for this metric, as points `[K, 2]` (for Table 1's distances)."""
        curve = result.curves[self.plotted]
        return np.column_stack([curve.x, curve.y])


class AreaSweep(SocoMetric):
    """ROAD-style sweeps over the area ratios 0.1 … 0.9: the mean accuracy over the sweep is the value."""

    order: ClassVar[str]
    x_name: ClassVar[str] = "fraction of pixels removed"
    summary: ClassVar[str]

    def ratios(self) -> tuple[float, ...]:
        return functional.AREA_RATIOS

    def steps(self, maps, rank, order):
        return [functional.removed_by_area(rank, r, self.order) for r in self.ratios()], None

    def score(self, ctx, explainer, evaluated):
        correct = evaluated.outcomes.correct.astype(np.float64)
        result = mean_result(
            self.summary,
            correct.mean(axis=0),
            evaluated.index,
            ctx.rng(f"bootstrap/{explainer}"),
            evaluated.skipped,
        )
        result.curves[self.plotted] = Curve(self.x_name, list(self.x_values()), correct.mean(axis=1).tolist())
        return result

    def x_values(self) -> tuple[float, ...]:
        return self.ratios()


def fill_option(default: str) -> Param:
    """The `fill` option of Deletion and Insertion: what removed (not yet inserted) pixels become."""
    return Param(
        "fill", default, "removed pixels become: zero (input 0), mean (image's colour) or blur", str, CANVASES
    )


def rise_options(fill: str) -> tuple[Param, ...]:
    """Options of Petsiuk et al.'s games: the pair, the fill (RISE: 0 for deletion, blur for insertion) and
    the number of steps."""
    steps = Param(
        "steps",
        functional.RISE_STEPS,
        "steps of the game (RISE: 224, i.e. 224 pixels of 224²)",
        int,
        minimum=1,
    )
    return (*OPTIONS, fill_option(fill), steps)


class CanvasFill:
    """Mixin: the sweep fills removed pixels with the canvas named by the `fill` option (`sweeps.canvas`)."""

    opts: dict[str, Any]

    @property
    def fill(self) -> str:
        return self.opts["fill"]


class DeletionAccuracy(CanvasFill, AreaSweep):
    """SoCo's Deletion comparator (its `deletion.yaml`: MoRF by area, removed pixels set to 0, accuracy): a
    faithful map makes accuracy fall fast. Not Petsiuk et al.'s Deletion (`Deletion`)."""

    higher_is_better = False
    options = (*OPTIONS, fill_option("zero"))
    order, plotted, summary = "morf", "deletion_accuracy", "deletion_mean_accuracy"


class InsertionAccuracy(CanvasFill, AreaSweep):
    """The insertion counterpart of `DeletionAccuracy`: only the top-attributed fraction is kept, the rest
    filled; accuracy should rise fast. Not Petsiuk et al.'s Insertion (`Insertion`)."""

    higher_is_better = True
    options = (*OPTIONS, fill_option("zero"))
    order, plotted, summary = "lerf", "insertion_accuracy", "insertion_mean_accuracy"
    x_name = "fraction of pixels inserted"

    def x_values(self) -> tuple[float, ...]:
        return functional.AREA_RATIOS

    def ratios(self) -> tuple[float, ...]:
        return tuple(round(1 - r, 5) for r in functional.AREA_RATIOS)


class RiseGame(CanvasFill, SocoMetric):
    """Petsiuk et al.'s causal metrics (RISE, BMVC 2018, and its evaluation code): pixels go in order of
    decreasing attribution (ties in random order), `step` = ⌈P/steps⌉ at a time; after every step, the
    softmax probability of the class the map explains (the model's prediction, as RISE) is recorded, from
    the untouched start to the finished game (n + 1 points). Value: the mean over images of the area under
    that curve (RISE's trapezoidal `auc`)."""

    mode: ClassVar[str]  # "deletion" or "insertion": its curve's name
    x_name: ClassVar[str]

    def steps(self, maps, rank, order):
        size = rank.shape[1]
        counts = functional.rise_counts(size, self.opts["steps"])
        # deletion: the `count` most attributed are removed; insertion: all but the `count` most attributed
        masks = (
            (rank >= size - count for count in counts)
            if self.mode == "deletion"
            else (rank < size - count for count in counts)
        )
        return masks, [count / size for count in counts]

    def score(self, ctx, explainer, evaluated):
        probability = evaluated.outcomes.probability  # [n + 1, N]
        result = mean_result(
            f"{self.mode}_auc",
            functional.rise_auc(probability),
            evaluated.index,
            ctx.rng(f"bootstrap/{explainer}"),
            evaluated.skipped,
        )
        x = evaluated.extra[0] if evaluated.extra else []  # the same for every batch
        result.curves[self.mode] = Curve(self.x_name, x, probability.mean(axis=1).tolist())
        return result


class Deletion(RiseGame):
    """Deletion (Petsiuk et al. 2018): the most attributed pixels are removed first (set to 0, RISE's
    substrate); the explained class's probability should fall fast. Lower is better."""

    higher_is_better = False
    options = rise_options("zero")
    mode = plotted = "deletion"
    x_name = "fraction of pixels deleted"


class Insertion(RiseGame):
    """Insertion (Petsiuk et al. 2018): from a blurred canvas, the most attributed pixels are inserted first;
    the explained class's probability should rise fast. Higher is better."""

    higher_is_better = True
    options = rise_options("blur")
    mode = plotted = "insertion"
    x_name = "fraction of pixels inserted"


class RoadMorf(AreaSweep):
    """ROAD MoRF alone (noisy linear imputation); used by the Table 1 experiment."""

    higher_is_better = False
    order, plotted, summary = "morf", "morf", "road_morf_mean_accuracy"


class RoadLerf(AreaSweep):
    higher_is_better = True
    order, plotted, summary = "lerf", "lerf", "road_lerf_mean_accuracy"


class Road(SocoMetric):
    """ROAD (Rong et al. 2022): MoRF and LeRF by area with noisy linear imputation. Value: mean LeRF accuracy
    minus mean MoRF accuracy over the sweep (attribench's summary; higher is better)."""

    higher_is_better = True
    plotted = "morf"

    def compute(self, ctx, explainer):
        morf = RoadMorf(**self.opts).compute(ctx, explainer)
        lerf = RoadLerf(**self.opts).compute(ctx, explainer)
        per_image = lerf.per_sample[RoadLerf.summary] - morf.per_sample[RoadMorf.summary]
        result = mean_result("road_lerf_minus_morf", per_image, morf.index, ctx.rng(f"bootstrap/{explainer}"))
        result.skipped = morf.skipped
        result.values.update({**morf.values, **lerf.values})
        result.curves.update({**morf.curves, **lerf.curves})
        return result


class Completeness(SocoMetric):
    """Completeness (Algorithm 4): remove (impute) the pixels whose normalised attribution exceeds each
    threshold 0.9 … 0.1 and record the accuracy drop. Value: the mean drop over the thresholds."""

    higher_is_better = True
    plotted = "completeness"

    def steps(self, maps, rank, order):
        thresholds = functional.COMPLETENESS_THRESHOLDS
        removals = [torch.zeros_like(rank, dtype=torch.bool)] + [
            functional.removed_by_value(maps, t) for t in thresholds
        ]
        return removals, torch.stack([r.float().mean(dim=1) for r in removals[1:]]).cpu().numpy()

    def score(self, ctx, explainer, evaluated):
        correct = evaluated.outcomes.correct.astype(np.float64)
        drop = correct[:1] - correct[1:]  # [T, N]: original minus imputed
        result = mean_result(
            "completeness_mean",
            drop.mean(axis=0),
            evaluated.index,
            ctx.rng(f"bootstrap/{explainer}"),
            evaluated.skipped,
        )
        thresholds = list(functional.COMPLETENESS_THRESHOLDS)
        result.curves["completeness"] = Curve("attribution threshold", thresholds, drop.mean(axis=1).tolist())
        removed = (
            np.concatenate(evaluated.extra, axis=1) if evaluated.extra else np.zeros((len(thresholds), 0))
        )
        result.curves["removed"] = Curve("attribution threshold", thresholds, removed.mean(axis=1).tolist())
        result.values["accuracy"] = float(correct[0].mean()) if correct.size else float("nan")
        accuracy = wilson_ci(int(correct[:1].sum()), correct.shape[1])  # a rate: Wilson's interval
        result.values.update(accuracy_low=accuracy.low, accuracy_high=accuracy.high)
        return result


class Soundness(SocoMetric):
    """Soundness (Algorithm 3): add the top-attributed pixels back 1 % at a time (LeRF, removal ratio 0.98 →
    0.03); attribution added at a step where accuracy rose by less than ε = 0.01 counts as false, judged
    exactly on counts (Δcorrect < ε·N, `functional.false_steps`); per image, soundness = (kept − false
    attribution) / kept. Value: the mean over the sweep and the images; its interval is a bootstrap over
    images that takes the step decisions again on every resample."""

    higher_is_better = True
    plotted = "soundness_vs_accuracy"
    options = (
        *OPTIONS,
        Param(
            "indicator",
            "accuracy",
            "accuracy (one decision per step) or score (per image, label logit)",
            str,
            ("accuracy", "score"),
        ),
    )

    def steps(self, maps, rank, order):
        ratios = functional.SOUNDNESS_RATIOS
        accounting = functional.soundness_accounting(maps, order, ratios)
        return [functional.removed_by_area(rank, r, "lerf") for r in ratios], accounting

    def decisions(self, outcomes: Outcomes) -> np.ndarray:
        """Whether each step's added features count as false, decided on exactly the images `outcomes`
        holds: `[T]` from their count of correct images (`--indicator accuracy`) or `[T, N]` from each
        image's own score."""
        if self.opts["indicator"] == "accuracy":
            return functional.false_steps(outcomes.correct.sum(axis=1), outcomes.correct.shape[1])
        return functional.false_score_steps(outcomes.score)

    def score(self, ctx, explainer, evaluated):
        outcomes = evaluated.outcomes
        accounting = functional.SoundnessAccounting(
            np.concatenate([a.kept for a in evaluated.extra], axis=1),
            np.concatenate([a.added for a in evaluated.extra], axis=1),
        )
        flagged = self.decisions(outcomes)
        ratios = functional.soundness_ratios(accounting, flagged)  # [T, N]
        per_image = functional.nanmean(ratios, axis=0)
        skipped = dict(evaluated.skipped)
        zero = ~np.isfinite(per_image)
        if zero.any():
            skipped[ZERO_MAP] = int(zero.sum())
        result = mean_result(
            "soundness_mean",
            per_image[~zero],
            evaluated.index[~zero],
            ctx.rng(f"bootstrap/{explainer}"),
            skipped,
        )

        def resampled(draw: np.ndarray) -> float:
            """The headline on a resample of the images, its step decisions taken again on the resample."""
            part = functional.SoundnessAccounting(accounting.kept[:, draw], accounting.added[:, draw])
            values = functional.nanmean(
                functional.soundness_ratios(part, self.decisions(outcomes.take(draw))), 0
            )
            return float(values[np.isfinite(values)].mean()) if np.isfinite(values).any() else float("nan")

        # the step decisions depend on which images are evaluated: each resample takes them again
        result.uncertainty = bootstrap_interval(
            resampled, np.zeros(len(per_image)), ctx.rng(f"bootstrap/{explainer}")
        )
        accuracy = outcomes.correct.mean(axis=1)
        kept = [round(1 - r, 5) for r in functional.SOUNDNESS_RATIOS]
        curve = functional.nanmean(ratios[:, ~zero], axis=1)
        result.curves["soundness"] = Curve("fraction of pixels kept", kept, curve.tolist())
        result.curves["accuracy"] = Curve("fraction of pixels kept", kept, accuracy.tolist())
        result.curves["soundness_vs_accuracy"] = Curve("accuracy", accuracy.tolist(), curve.tolist())
        result.values["false_steps"] = float(flagged.sum(axis=0).mean())  # per image with --indicator score
        return result
