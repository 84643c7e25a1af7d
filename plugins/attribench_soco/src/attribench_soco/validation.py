"""`soco.validate`: the paper's two checks that soundness and completeness see attribution values.

- Per explainer (§5.2, Table 1): its maps are modified by each Remove/Introduce scheme; Completeness,
  Soundness, ROAD (MoRF) and SoCo's accuracy Deletion are evaluated on the original and both modified
  maps, and each metric's figure is the minimal Hausdorff distance between the three curves, averaged over
  the schemes.
- Extra rows `linear:<variant>` (§5.1): the synthetic linear test (`linear.py`), mean and spread over
  trials.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from attribench_core import Curve, MetricContext, Param, Result, Uncertainty

from . import functional, linear
from .metrics import OPTIONS, Completeness, DeletionAccuracy, RoadMorf, SocoMetric, Soundness
from .modify import SCHEMES, modify

# Table 1's Deletion is SoCo's own (its deletion.yaml: accuracy, 0 fill), not Petsiuk et al.'s
COMPARED = {
    "completeness": Completeness,
    "soundness": Soundness,
    "road": RoadMorf,
    "deletion": DeletionAccuracy,
}
# the paper's Table 1 (its VGG16 on ImageNet, §5.2): minimal Hausdorff distance, mean and std
PAPER_TABLE_1 = {
    "completeness": (0.503, 0.112),
    "soundness": (0.183, 0.046),
    "deletion": (0.019, 0.011),
    "road": (0.014, 0.009),
}


def _modified(mode: str, scheme: str, maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return modify(maps, mode, scheme, generator=generator)


class Validate(SocoMetric):
    """Table 1 per explainer, and the linear test as extra rows. Value: the smallest Hausdorff distance of
    the value-based metrics minus the largest of the order-based ones (attribench's summary: positive when
    Completeness and Soundness separate the maps more than ROAD and Deletion do)."""

    higher_is_better = True
    category = "validation"
    num_imgs = 100
    default_explainers = ("ig", "gradcam")
    options = (
        *OPTIONS,
        Param("trials", 200, "repetitions of the linear test (the paper: 1000)", int, minimum=1),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.metric_options = {k: v for k, v in self.opts.items() if k != "trials"}

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        distances: dict[str, list[float]] = {name: [] for name in COMPARED}
        curves: dict[str, Curve] = {}
        for name, cls in COMPARED.items():
            metric = cls(**self.metric_options)
            original = metric.compute(ctx, explainer)
            curves[f"{name}_original"] = original.curves[metric.plotted]
            for scheme in SCHEMES:
                versions = [metric.curve_points(original)]
                for mode in ("remove", "introduce"):
                    modified = metric.score(
                        ctx, explainer, metric.evaluate(ctx, explainer, partial(_modified, mode, scheme))
                    )
                    versions.append(metric.curve_points(modified))
                    curves[f"{name}_{mode}_{scheme}"] = modified.curves[metric.plotted]
                distances[name].append(functional.minimal_hausdorff(versions))
        values = {f"hausdorff_{name}": float(np.mean(d)) for name, d in distances.items()}
        values.update({f"hausdorff_{name}_std": float(np.std(d)) for name, d in distances.items()})
        separation = min(values["hausdorff_completeness"], values["hausdorff_soundness"]) - max(
            values["hausdorff_road"], values["hausdorff_deletion"]
        )
        return Result(value=separation, values=values, curves=curves, n=len(ctx.index))

    def extra_results(self, ctx: MetricContext) -> dict[str, Result]:
        trials = self.opts["trials"]
        kept = [round(1 - r, 5) for r in functional.SOUNDNESS_RATIOS]
        thresholds = list(functional.COMPLETENESS_THRESHOLDS)
        rows = {}
        for variant, runs in linear.run_trials(trials, ctx.seed).items():
            soundness = np.stack([c.soundness for c in runs])
            by_accuracy = np.stack([c.soundness_accuracy for c in runs])
            completeness = np.stack([c.completeness for c in runs])
            per_trial = soundness.mean(axis=1)
            rows[f"linear:{variant}"] = Result(
                value=float(per_trial.mean()),
                values={
                    "soundness_mean": float(per_trial.mean()),
                    "soundness_accuracy_indicator_mean": float(by_accuracy.mean()),
                    "completeness_mean": float(completeness.mean()),
                },
                curves={
                    "soundness": Curve("fraction of features kept", kept, soundness.mean(0).tolist()),
                    "soundness_std": Curve("fraction of features kept", kept, soundness.std(0).tolist()),
                    "soundness_accuracy_indicator": Curve(
                        "fraction of features kept", kept, by_accuracy.mean(0).tolist()
                    ),
                    "completeness": Curve("attribution threshold", thresholds, completeness.mean(0).tolist()),
                    "completeness_std": Curve(
                        "attribution threshold", thresholds, completeness.std(0).tolist()
                    ),
                },
                uncertainty=Uncertainty(
                    "std",
                    float(per_trial.mean() - per_trial.std()),
                    float(per_trial.mean() + per_trial.std()),
                ),
                n=trials,
            )
        return rows
