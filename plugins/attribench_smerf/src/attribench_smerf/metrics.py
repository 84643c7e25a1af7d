"""SMERF's metrics as attribench `Metric`s: AFL (PAFL/SAFL), IOU (PIOU/SIOU) and MAFL, over one setting, the
simple or complex group, or all seven; images sampled per bucket; the maths lives in `functional.py`.

The headline value is the mean over buckets of the primary score (PAFL, PIOU, PMAFL); the table `buckets`
holds both scores' mean per (setting, bucket) with the bucket's valid images (NaN where undefined);
`values` carry the secondary mean, per-setting means, the minimum over all buckets and the simple/complex
mean and minimum over buckets (the paper's headline), the success fraction and the wrong-focus failures
and share (Fig. 7), and saturation by number of objects (Fig. 6b).

Uncertainty (`functional.bucket_interval`): the headline's interval (`uncertainty`) and the `_low`/`_high`
values beside the minimum over buckets and the group means and minima are stratified bootstraps that
resample images within each bucket; the success and wrong-focus shares get Wilson's interval over buckets.
"""

from __future__ import annotations

from abc import abstractmethod
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
    ResultTable,
    derive_seed,
)
from attribench_smerf import functional
from attribench_smerf.models import VARIANTS, model_name
from attribench_smerf.postprocess import MODES, postprocess
from attribench_smerf.settings import COMPLEX, PRESETS, SETTINGS, SIMPLE
from attribench_smerf.textbox import BACKGROUNDS

GROUPS = {"simple": SIMPLE, "complex": COMPLEX, "all": SETTINGS}

OPTIONS = (
    Param("setting", "simple_fr", "a setting, or simple, complex, all", str, (*SETTINGS, *GROUPS)),
    Param("variant", "cnn", "cnn (paper A.2), pgd (adversarially trained) or vgg (deeper)", str, VARIANTS),
    Param("preset", "default", "images per bucket: default, paper (Table 2), tiny", str, tuple(PRESETS)),
    Param("background", "black", "black, noise (B.8), natural (B.9: --background-dir)", str, BACKGROUNDS),
    Param("background_dir", "", "folder of pictures for the natural background", str),
    Param("postprocess", "paper", "paper: SMERF's per-family maps; uniform: sum of |a|", str, MODES),
    Param("blur", 7, "box blur size before scoring (0: none)", int, minimum=0),
)


class SmerfMetric(Metric):
    """Shared by AFL, IOU and MAFL: choose settings and models, sample per bucket, score, aggregate."""

    higher_is_better = True
    category = "ground_truth"
    dataset = "smerf.simple_fr"
    model = "smerf.simple_fr"
    requires = ("regions",)
    options = OPTIONS
    num_imgs = 20  # per bucket, as the paper
    names: ClassVar[tuple[str, str]]  # (primary score, secondary score)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        setting = self.opts["setting"]
        self.settings = GROUPS.get(setting, (setting,))
        self.dataset = f"smerf.{self.settings[0]}"
        self.model = self.model_for(self.settings[0])
        self._sampled: dict[str, np.ndarray] = {}

    def model_for(self, setting: str) -> str:
        return f"smerf.{model_name(setting, self.opts['variant'])}"

    def dataset_options(self) -> dict[str, Any]:
        options = {"preset": self.opts["preset"], "background": self.opts["background"]}
        if self.opts["background_dir"]:
            options["background_dir"] = self.opts["background_dir"]
        return options

    def sample(self, ctx: MetricContext, setting: str) -> np.ndarray:
        """`num_imgs` test images of every bucket of `setting` (all when a bucket has fewer), seeded; chosen
        once per setting and reused by `requests` and `compute`."""
        if setting not in self._sampled:
            self._sampled[setting] = self._choose(ctx, setting)
        return self._sampled[setting]

    def _choose(self, ctx: MetricContext, setting: str) -> np.ndarray:
        buckets = ctx.load_dataset(f"smerf.{setting}").buckets
        chosen = []
        for bucket in np.unique(buckets):
            index = np.flatnonzero(buckets == bucket)
            rng = np.random.default_rng(derive_seed(ctx.seed, "smerf-sample", setting, int(bucket)))
            chosen.append(np.sort(rng.choice(index, size=min(ctx.num_imgs, len(index)), replace=False)))
        return np.concatenate(chosen)

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        return [
            AttributionRequest(
                f"smerf.{s}", self.model_for(s), tuple(map(int, self.sample(ctx, s))), self.target
            )
            for s in self.settings
        ]

    @abstractmethod
    def score(self, maps: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(primary, secondary) scores `[B]` of 2-D maps against the batch's regions (NaN: undefined)."""

    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        name = ctx.explainer_name(explainer)
        primary, secondary, buckets, settings, index, has_primary, constant = [], [], [], [], [], [], []
        skipped: Counter[str] = Counter()
        for setting in self.settings:
            dataset = f"smerf.{setting}"
            # one bucket per call, as the original normalised DeconvNet/GBP maps over a bucket's images
            sampled = self.sample(ctx, setting)
            data_buckets = ctx.load_dataset(dataset).buckets[sampled]
            for bucket in np.unique(data_buckets):
                part = sampled[data_buckets == bucket]
                batches = ctx.attribution_batches(
                    explainer, dataset=dataset, model=self.model_for(setting), index=part
                )
                for batch, stored in batches:
                    finite = ~stored.nonfinite
                    skipped["non-finite attribution"] += int((~finite).sum())
                    maps = postprocess(
                        torch.from_numpy(stored.attribution[finite]), name, self.opts["postprocess"]
                    )
                    kept = _select(batch, finite)
                    p, s = self.score(maps, kept)
                    primary.append(p.numpy())
                    secondary.append(s.numpy())
                    has_primary.append(_role_masks(kept)[0].flatten(1).any(1).numpy())
                    constant.append(
                        functional.constant(functional.box_blur(maps.double(), self.opts["blur"])).numpy()
                    )
                    buckets.append(np.full(int(finite.sum()), int(bucket)))
                    settings += [setting] * int(finite.sum())
                    index.append(batch.index[finite])
        primary_values = np.concatenate(primary)
        skipped.update(
            functional.undefined_reasons(
                primary_values, np.concatenate(has_primary), np.concatenate(constant), self.names[0]
            )
        )
        return self.aggregate(
            primary_values, np.concatenate(secondary), np.concatenate(buckets), settings,
            np.concatenate(index), skipped, ctx.rng(f"bootstrap/{explainer}"),
        )  # fmt: skip

    def aggregate(
        self,
        primary: np.ndarray,
        secondary: np.ndarray,
        buckets: np.ndarray,
        settings: list[str],
        index: np.ndarray,
        skipped: Counter[str],
        rng: np.random.Generator,
    ) -> Result:
        """Per-bucket tables, their summaries and intervals (see the module's docstring); `skipped` already
        counts the undefined samples (NaN `primary`) with their reasons."""
        p_name, s_name = self.names
        labels = functional.bucket_labels(buckets, settings)
        p_table = functional.bucket_table(primary, buckets, settings)
        s_table = functional.bucket_table(secondary, buckets, settings)
        p_means = np.array([v["mean"] for v in p_table.values()])
        defined = p_means[~np.isnan(p_means)]
        value = float(defined.mean()) if defined.size else float("nan")
        values: dict[str, float] = {p_name: value, s_name: _nanmean([v["mean"] for v in s_table.values()])}
        for setting, summary in functional.per_setting(p_table).items():
            values[f"{p_name}_{setting}"] = summary["mean"]
            values[f"{p_name}_{setting}_min"] = summary["min"]
        for setting, summary in functional.per_setting(s_table).items():
            values[f"{s_name}_{setting}"] = summary["mean"]
        low = functional.bucket_interval(primary, labels, np.min, rng)
        _put(
            values, f"{p_name}_min", float(defined.min()) if defined.size else float("nan"), low.low, low.high
        )
        for group, summary in functional.simple_vs_complex(p_table).items():
            if summary["buckets"]:
                members = np.isin(settings, GROUPS[group])
                for statistic, reduce in (("mean", np.mean), ("min", np.min)):
                    ci = functional.bucket_interval(primary[members], labels[members], reduce, rng)
                    _put(values, f"{p_name}_{group}_{statistic}", summary[statistic], ci.low, ci.high)
        for setting, success in functional.success_fraction(p_table, s_table).items():
            _put(values, f"success_{setting}", success["fraction"], success["low"], success["high"])
        for setting, focus in functional.wrong_focus(p_table, s_table).items():
            values[f"wrong_focus_failures_{setting}"] = float(focus["failures"])
            _put(values, f"wrong_focus_share_{setting}", focus["fraction"], focus["low"], focus["high"])
        for objects, summary in functional.saturation(p_table).items():
            values[f"{p_name}_objects_{objects}"] = summary["mean"]
        ok = ~np.isnan(primary)
        return Result(
            value=value,
            values=values,
            per_sample={p_name: primary, s_name: secondary, "bucket": buckets.astype(np.float64)},
            index=index,
            uncertainty=functional.bucket_interval(primary, labels, np.mean, rng),
            n=int(ok.sum()),
            skipped={k: v for k, v in skipped.items() if v},
            tables={BUCKET_TABLE: bucket_result_table(self.names, p_table, s_table)},
        )


BUCKET_TABLE = "buckets"  # the name of the per-bucket table in a SMERF result


def bucket_result_table(
    names: tuple[str, str], primary: functional.BucketTable, secondary: functional.BucketTable
) -> ResultTable:
    """The paper's per-bucket bars (Fig. 2): per (setting, bucket), the mean primary and secondary score and
    the images the primary score is defined on."""
    rows: list[list[str | float | None]] = [
        [setting, float(bucket), summary["mean"], secondary[setting, bucket]["mean"], float(summary["n"])]
        for (setting, bucket), summary in primary.items()
    ]
    return ResultTable(["setting", "bucket", *names, "n"], rows)


def _put(values: dict[str, float], name: str, value: float, low: float, high: float) -> None:
    """A value as `<name>` with its interval as `<name>_low` and `<name>_high`."""
    values[name], values[f"{name}_low"], values[f"{name}_high"] = value, low, high


def _nanmean(values: list[float]) -> float:
    array = np.array(values, dtype=np.float64)
    return float(np.nanmean(array)) if np.isfinite(array).any() else float("nan")


def _select(batch: Any, keep: np.ndarray) -> Any:
    """The batch's regions and roles for the kept samples."""
    mask = torch.from_numpy(keep)
    regions = {k: v[mask] for k, v in batch.regions.items()}
    roles = [r for r, k in zip(batch.roles, keep, strict=True) if k]
    return regions, roles


class AFL(SmerfMetric):
    """Attribution Focus Level (PAFL, SAFL): share of the blurred, min-max normalised map on the primary and
    on the secondary objects."""

    names = ("pafl", "safl")

    def score(self, maps: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        primary, secondary = _role_masks(batch)
        return functional.afl(maps, primary, secondary, blur=self.opts["blur"])


class IOU(SmerfMetric):
    """IOU (PIOU, SIOU) of the top-K pixels (K = the primary objects' area) with each object."""

    names = ("piou", "siou")
    options = (
        *OPTIONS,
        Param("threshold", "topk", "topk or histogram (the original's)", str, functional.THRESHOLDS),
    )

    def score(self, maps: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        objects, codes = _objects(batch)
        return functional.iou(maps, objects, codes, blur=self.opts["blur"], threshold=self.opts["threshold"])


class MAFL(SmerfMetric):
    """Mean AFL (PMAFL, SMAFL): mean normalised attribution per pixel on the primary and secondary objects."""

    names = ("pmafl", "smafl")

    def score(self, maps: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        primary, secondary = _role_masks(batch)
        return functional.mafl(maps, primary, secondary, blur=self.opts["blur"])


def _objects(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-object masks `[B,K,H,W]` and role codes `[B,K]` of a `(regions, roles)` pair."""
    regions, roles = batch
    return functional.stack_objects(
        regions, [r.get("primary", ()) for r in roles], [r.get("secondary", ()) for r in roles]
    )


def _role_masks(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return functional.role_masks(*_objects(batch))
