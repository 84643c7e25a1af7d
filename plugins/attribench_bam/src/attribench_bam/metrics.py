"""BAM's metrics (Yang & Kim 2019) as attribench `Metric`s: MCS, IDR, IIR, RMCS on stored maps, and TCAV.

Each compares g, the mean of BAM's normalised map over the object's mask (`functional.py`), between
(dataset, model) pairs evaluated on the same images, and keeps only the images every model of the
comparison classifies correctly (the dropped count is reported as skipped). Explainers explain the
predicted class. MCS and RMCS carry a bootstrap CI over the images, the rates IDR and IIR Wilson's score
interval, TCAV the range of its contrast over the random sets and a permutation test per model.

Defaults evaluate enough images for a working method's interval to exclude chance on bam-synth (200
composites for MCS and IDR, all 100 scenes of IIR and RMCS); the original CLI's default was 10.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np
import torch

from attribench_core import (
    AttributionRequest,
    Metric,
    MetricContext,
    Param,
    Result,
    Uncertainty,
    mean_result,
)

from . import functional
from .build import MIN_SIZE, SYNTH_N, SYNTH_SIZE, SYNTH_VAL
from .classes import BEDROOM, DOG
from .models import CAM_LAYER
from .patch import select_insignificant
from .tcav import MIN_CONCEPT_SIZE, SIGNIFICANCE, permutation_p_value, tcav_score

MISCLASSIFIED = "misclassified by a model of the comparison"

OPTIONS = (
    Param("data_root", "", "folder built by `attribench bam build`; empty: the embedded bam-synth", str),
    Param("size", SYNTH_SIZE, "bam-synth image side in pixels", int, minimum=MIN_SIZE),
    Param("n", SYNTH_N, "bam-synth images per class (train + val)", int, minimum=2),
    Param("val", SYNTH_VAL, "bam-synth validation images per class (fewer than n)", int, minimum=1),
)


class BamMetric(Metric):
    """Shared by BAM's metrics: the data options, the attribution requests of `comparisons`, and g."""

    higher_is_better = True
    category = "ground_truth"
    requires = ("regions",)
    options = OPTIONS
    num_imgs = 200  # the original CLI's --num_imgs was 10: IG's MCS interval then includes 0
    comparisons: ClassVar[tuple[tuple[str, str], ...]]  # (dataset, model) pairs, on the same images

    def dataset_options(self) -> dict[str, Any]:
        return {p.name: self.opts[p.name] for p in OPTIONS}

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        index = tuple(map(int, ctx.index))
        return [AttributionRequest(d, m, index, self.target) for d, m in self.comparisons]

    def object_attribution(
        self, ctx: MetricContext, explainer: str, dataset: str, model: str
    ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """(g `[N]`, correctly classified `[N]`, per-sample meta) over the evaluated images; g is NaN
        where the stored attribution is not finite."""
        g, correct, meta = [], [], []
        for batch, stored in ctx.attribution_batches(explainer, dataset=dataset, model=model):
            values = functional.object_attribution(
                functional.normalised_map(torch.from_numpy(stored.attribution)), batch.regions["object"]
            ).numpy()
            values[stored.nonfinite] = np.nan
            g.append(values)
            correct.append(stored.prediction == batch.labels.numpy())
            meta += batch.meta
        return np.concatenate(g), np.concatenate(correct), meta

    def result(
        self,
        ctx: MetricContext,
        explainer: str,
        name: str,
        values: functional.MetricValues,
        extra: dict[str, float] | None = None,
        skipped: Counter[str] | None = None,
        *,
        rate: bool = False,
    ) -> Result:
        """The mean of `values` with its interval: Wilson's for a `rate` (0/1 per image), else the
        bootstrap's; images dropped beyond the `skipped` reasons count as misclassified."""
        skipped = Counter(skipped or {})
        skipped[MISCLASSIFIED] += values.n_dropped - sum(skipped.values())
        result = mean_result(
            name,
            values.per_image,
            ctx.index[values.index],
            ctx.rng(f"bootstrap/{explainer}"),
            +skipped,
            rate=rate,
        )
        result.values.update(extra or {})
        return result


def _mean_defined(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when there is none)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


class MCS(BamMetric):
    """Model contrast score: g(obj model) − g(scene model) on the same composites; > 0 for a method that
    follows what each model uses."""

    dataset = "bam.obj"
    model = "bam.obj"
    comparisons = (("bam.obj", "bam.obj"), ("bam.scene", "bam.scene"))

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        g_obj, correct_obj, _ = self.object_attribution(ctx, explainer, *self.comparisons[0])
        g_scene, correct_scene, _ = self.object_attribution(ctx, explainer, *self.comparisons[1])
        keep = correct_obj & correct_scene
        values = functional.mcs(g_obj, g_scene, keep)
        extra = {"g_obj": _mean_defined(g_obj[keep]), "g_scene": _mean_defined(g_scene[keep])}
        return self.result(ctx, explainer, "mcs", values, extra)


class IDR(BamMetric):
    """Input dependence rate: the share of images where the scene model's map gives the object's region
    more without the object than with it (the object carries no scene information)."""

    dataset = "bam.scene"
    model = "bam.scene"
    comparisons = (("bam.scene_only", "bam.scene"), ("bam.scene", "bam.scene"))

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        g_without, correct_without, _ = self.object_attribution(ctx, explainer, *self.comparisons[0])
        g_with, correct_with, _ = self.object_attribution(ctx, explainer, *self.comparisons[1])
        values = functional.idr(g_without, g_with, correct_without & correct_with)
        return self.result(ctx, explainer, "idr", values, rate=True)


MAX_LOGIT_DISTANCE = 1.0


class IIR(BamMetric):
    """Input independence rate: the share of bamboo-forest scenes whose object-region g (scene_only model)
    changes by less than `threshold`·g when a functionally insignificant patch is added there.

    A patch counts as functionally insignificant when it keeps the prediction and moves the logits by
    less than `max_logit_distance` (L2; default 1: no logit moves by 1 or more, so no log-probability by
    more than 2); the others are skipped with their reason, and `patches_qualifying` counts the kept ones
    among the evaluated scenes. The original kept every patch. `--max-logit-distance inf` does too.
    """

    dataset = "bam.bamboo_forest"
    model = "bam.scene_only"
    comparisons = (("bam.bamboo_forest", "bam.scene_only"), ("bam.bamboo_forest_patch", "bam.scene_only"))
    num_imgs = 100  # all of bamboo_forest
    options = (
        *OPTIONS,
        Param("threshold", 0.1, "relative change of g counted as unchanged (BAM: 0.1)", float, minimum=0),
        Param(
            "max_logit_distance",
            MAX_LOGIT_DISTANCE,
            "patches moving the logits by this much (L2) or more are not insignificant; inf keeps all",
            float,
            greater_than=0,
        ),
    )

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        g_clean, correct_clean, _ = self.object_attribution(ctx, explainer, *self.comparisons[0])
        g_patched, correct_patched, meta = self.object_attribution(ctx, explainer, *self.comparisons[1])
        unchanged = np.array([m["prediction_unchanged"] for m in meta], dtype=bool)
        distances = np.array([m["logit_distance"] for m in meta], dtype=np.float64)
        limit = self.opts["max_logit_distance"]
        qualifying = select_insignificant(unchanged, distances, limit)
        keep = correct_clean & correct_patched & qualifying
        skipped = Counter(
            {
                "patch changed the prediction": int((~unchanged).sum()),
                f"patch moved the logits by {limit:g} or more": int((unchanged & ~qualifying).sum()),
            }
        )
        values = functional.iir(g_clean, g_patched, keep, self.opts["threshold"])
        extra = {
            "median_patch_logit_distance": float(np.median(distances)),
            "patches_qualifying": float(qualifying.sum()),
        }
        return self.result(ctx, explainer, "iir", values, extra, +skipped, rate=True)


SCENE_K_MODELS = tuple(f"bam.scene{k}" for k in range(1, 11))


class RMCS(BamMetric):
    """Relative model contrast on dogs in bedrooms: g(scene_i) − g(scene10) for i = 1..9, where model
    scene_i saw the dog in i scene classes; positive and decreasing in i for a method that follows how
    much each model relies on the dog.

    The headline is the per-image mean of the nine differences over the images all ten models classify
    correctly (with its bootstrap CI); `rmcs_<i>` keep each pair's jointly correct images, as the original.

    Its ground truth is checked functionally, as obj/scene's: `dog_reliance_<k>` is model scene_k's mean
    drop in the bedroom probability when the dog is removed from the evaluated images
    (`functional.label_probability_drop`); RMCS's premise holds when it falls as k grows
    (`reliance_decreasing`, strict, and `reliance_1_minus_10`).
    """

    dataset = "bam.dog_bedroom"
    model = "bam.scene1"
    comparisons = tuple(("bam.dog_bedroom", m) for m in SCENE_K_MODELS)
    num_imgs = 100  # all of dog_bedroom

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._reliance: dict[str, float] | None = None

    def dog_reliance(self, ctx: MetricContext) -> dict[str, float]:
        """The functional check of the scene_k models (see the class docstring), computed once per run."""
        if self._reliance is None:
            data = ctx.load_dataset(self.dataset)
            batch = data.batch(ctx.index)
            without = data.scene_only(ctx.index)  # type: ignore[attr-defined]
            drops = []
            for model in SCENE_K_MODELS:
                module = ctx.load_model(model).eval()
                with torch.no_grad():
                    logits = [module(x.to(ctx.device)).cpu() for x in (batch.images, without)]
                drops.append(float(functional.label_probability_drop(*logits, batch.labels).mean()))
            self._reliance = {f"dog_reliance_{k}": d for k, d in enumerate(drops, 1)}
            self._reliance["reliance_decreasing"] = float(functional.is_decreasing(drops))
            self._reliance["reliance_1_minus_10"] = drops[0] - drops[-1]
        return self._reliance

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        per_model = [self.object_attribution(ctx, explainer, d, m) for d, m in self.comparisons]
        g = np.stack([p[0] for p in per_model])
        correct = np.stack([p[1] for p in per_model])
        pairs = functional.rmcs(g, correct)
        extra = {f"rmcs_{i}": v.value for i, v in enumerate(pairs, 1)}
        contrasts = np.array([v.value for v in pairs])
        extra["decreasing"] = float(functional.is_decreasing(contrasts))
        extra["positive_share"] = float(np.mean(contrasts > 0))
        extra.update(self.dog_reliance(ctx))
        all_correct = correct.all(axis=0)
        headline = functional.mcs((g[:-1] - g[-1]).mean(axis=0), np.zeros(g.shape[1]), all_correct)
        return self.result(ctx, explainer, "rmcs", headline, extra)


class TCAV(BamMetric):
    """TCAV (Kim et al. 2018, Captum's `captum.concept`): the dog concept's score for the obj model (dog
    logit) minus for the scene model (bedroom logit), on dogs in bedrooms; concept: dogs pasted in random
    scenes; random sets: scene-only images. A property of the two models: it uses no attributions, so
    every explainer of a run gets the same value (computed once).

    Statistical test as Kim et al. §3.2: per model, the concept's scores against the `random_sets` are
    compared with the scores of one more random set against the same sets (what chance looks like) by a
    two-sided permutation test (`p_obj`, `p_scene`; `significant_*` at 0.05, no multiple-test correction).
    The uncertainty is the range of the contrast over the random sets: a spread, not a confidence interval.
    """

    dataset = "bam.dog_bedroom"
    model = "bam.obj"
    comparisons = ()  # no attributions: `requests` asks for none
    num_imgs = 100
    options = (
        *OPTIONS,
        Param("layer", CAM_LAYER.replace("conv", "relu"), "layer whose activations define the CAV", str),
        Param("random_sets", 10, "random counterpart sets (BAM: 2; 10 makes the test exact)", int, minimum=2),
        Param(
            "concept_size",
            100,
            "images per concept and random set (BAM: 100; the CAV holds a third of them out)",
            int,
            minimum=MIN_CONCEPT_SIZE,
        ),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._computed: Result | None = None

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        if self._computed is None:
            self._computed = self._tcav(ctx)
        return self._computed

    def _tcav(self, ctx: MetricContext) -> Result:
        composites = ctx.load_dataset("bam.obj")
        scene_only = ctx.load_dataset("bam.scene_only")
        rng = ctx.rng("tcav")
        size, device = self.opts["concept_size"], ctx.device
        dogs = np.flatnonzero(composites.objects == DOG)  # type: ignore[attr-defined]
        concept = composites.batch(rng.choice(dogs, min(size, len(dogs)), replace=False)).images.to(device)
        randoms = [
            scene_only.batch(rng.choice(len(scene_only), size, replace=False)).images.to(device)
            for _ in range(self.opts["random_sets"] + 1)  # the last one: the random-vs-random reference
        ]
        inputs = ctx.dataset.batch(ctx.index).images.to(device)
        scores = {}
        layer = self.opts["layer"]
        for name, target in (("obj", DOG), ("scene", BEDROOM)):
            module = ctx.load_model(f"bam.{name}").eval()
            scores[name] = tcav_score(
                module,
                [layer],
                target,
                concept,
                randoms[:-1],
                inputs,
                null_concept=randoms[-1],
                seed=ctx.seed,
            )[layer]
        per_set = np.array(scores["obj"]["scores"]) - np.array(scores["scene"]["scores"])
        value = float(scores["obj"]["mean"] - scores["scene"]["mean"])
        values = {"tcav": value}
        for name, score in scores.items():
            p = permutation_p_value(score["scores"], score["null_scores"], seed=ctx.seed)
            values |= {
                f"tcav_{name}": float(score["mean"]),
                f"tcav_null_{name}": float(np.mean(score["null_scores"])),
                f"p_{name}": p,
                f"significant_{name}": float(p < SIGNIFICANCE),
                f"cav_accuracy_{name}": float(np.mean(score["cav_accuracies"])),
            }
        return Result(
            value=value,
            values=values,
            uncertainty=Uncertainty("range_over_random_sets", float(per_set.min()), float(per_set.max())),
            n=len(inputs),
        )
