"""The attribution gallery: for a few samples of each (dataset, model) in the store, the input and every
explainer's map side by side, with the primary ground-truth regions outlined.

The inputs come from rebuilding the dataset through the registry from the group's provenance (its name,
options and seed; attributions are computed on the test split). When that is not possible (its plugin is
not installed) the maps are shown alone, and the caption says why.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import numpy as np

from attribench_core.report import figures
from attribench_core.report.content import Block, Figure, ReportInput, Section
from attribench_core.store import GroupKey

SAMPLES = 4
OUTLINE = "#00d000"


def pick(common: np.ndarray, k: int = SAMPLES) -> np.ndarray:
    """Up to `k` indices spread evenly over the sorted `common` indices."""
    common = np.unique(common)
    if len(common) <= k:
        return common
    return common[np.linspace(0, len(common) - 1, k).round().astype(int)]


def display_image(image: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """`[C,H,W]` in `value_range` -> `[H,W,3]` or `[H,W]` in [0, 1] for `imshow` (mean over other C)."""
    low, high = value_range
    scaled = np.clip((np.asarray(image, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if scaled.shape[0] == 3:
        return scaled.transpose(1, 2, 0)
    return scaled.mean(axis=0)


def signed_map(attribution: np.ndarray) -> tuple[np.ndarray, float]:
    """`[C,H,W]` -> the channel sum `[H,W]` and a symmetric colour limit (99th percentile of |map|)."""
    heat = np.nan_to_num(np.asarray(attribution, dtype=np.float64).sum(axis=0))
    limit = float(np.percentile(np.abs(heat), 99))
    return heat, limit if limit > 0 else 1.0


class Inputs(NamedTuple):
    """The gallery's samples as the dataset gives them."""

    images: np.ndarray  # [B,C,H,W]
    primary: np.ndarray  # [B,H,W] bool
    value_range: tuple[float, float]
    class_names: tuple[str, ...]


def rebuilt_inputs(
    report: ReportInput, attrs: dict[str, Any], index: np.ndarray
) -> tuple[Inputs | None, str]:
    """The samples at `index` of the group's dataset rebuilt from its provenance, or None and why not."""
    try:
        entry = report.registry.resolve("dataset", attrs["dataset"])
        dataset = entry.create(split="test", seed=attrs["seed"], **(attrs.get("dataset_options") or {}))
        batch = dataset.batch(index)
        inputs = Inputs(
            batch.images.numpy(),
            batch.role_mask("primary").numpy(),
            dataset.value_range,
            tuple(getattr(dataset, "class_names", ())),
        )
        return inputs, ""
    except Exception as exc:  # a missing plugin or a dataset that cannot be rebuilt here: maps only
        return None, f"Inputs not shown: dataset {attrs.get('dataset')} could not be rebuilt ({exc})."


def _explainer_groups(report: ReportInput) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Attribution groups by (dataset@hash, model@hash)."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for info in report.attribution_groups:
        _, dataset, model, _ = info["path"].split("/")
        grouped[dataset, model].append(info)
    return dict(sorted(grouped.items()))


def _column_names(groups: list[dict[str, Any]]) -> list[str]:
    """Explainer names, with the parameter hash where one explainer has several groups."""
    names = [g["attrs"].get("explainer", g["path"].rsplit("/", 1)[1]) for g in groups]
    return [
        n if names.count(n) == 1 else g["path"].rsplit("/", 1)[1] for n, g in zip(names, groups, strict=True)
    ]


def outline(ax: Any, mask: np.ndarray) -> None:
    """Draw the boundary of a boolean mask (nothing for an empty one)."""
    if mask.any():
        ax.contour(mask, levels=[0.5], colors=OUTLINE, linewidths=1)


def figure(report: ReportInput, groups: list[dict[str, Any]]) -> Figure | None:
    """The gallery figure of one (dataset, model): one row per sample, the input then each explainer."""
    keys = [GroupKey(*g["path"].split("/")[1:]) for g in groups]
    common = report.store.completed(keys[0])
    for key in keys[1:]:
        common = np.intersect1d(common, report.store.completed(key))
    index = pick(common)
    if not len(index):
        return None
    attrs = groups[0]["attrs"]
    inputs, why_not = rebuilt_inputs(report, attrs, index)
    maps = [report.store.read(key, index) for key in keys]
    first = 1 if inputs is not None else 0
    fig, axes = figures.new_grid(len(index), first + len(groups))
    for row, i in enumerate(index):
        target, prediction = int(maps[0].target[row]), int(maps[0].prediction[row])
        mask = None
        if inputs is not None:
            mask = inputs.primary[row]
            ax = axes[row, 0]
            ax.imshow(display_image(inputs.images[row], inputs.value_range), cmap="gray")
            outline(ax, mask)
            names = inputs.class_names
            name = names[target] if target < len(names) else str(target)
            ax.set_title(f"#{i}: {name}", fontsize=7)
        for column, (name, stored_maps) in enumerate(zip(_column_names(groups), maps, strict=True)):
            ax = axes[row, first + column]
            heat, limit = signed_map(stored_maps.attribution[row])
            ax.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit)
            if mask is not None and mask.shape == heat.shape:
                outline(ax, mask)
            if row == 0:
                ax.set_title(name, fontsize=7)
        axes[row, 0].set_ylabel(f"target {target}, pred. {prediction}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    caption = (
        "Maps: channel sum, red positive, blue negative, scaled per map to its 99th percentile of |value|; "
        "green outline: the primary ground-truth regions."
    )
    title = f"{attrs.get('dataset')} / {attrs.get('model')} (seed {attrs.get('seed')})"
    return figures.render(fig, title, f"{caption} {why_not}".strip())


def sections(report: ReportInput) -> list[Section]:
    """One gallery figure per (dataset, model) attribution group; no section when the store holds no maps."""
    grouped = _explainer_groups(report)
    if not grouped:
        return []
    blocks: list[Block] = [f for f in (figure(report, g) for g in grouped.values()) if f is not None]
    text = (
        f"Up to {SAMPLES} samples per dataset and model, spread over the images every explainer was run on: "
        "the input, then each method's attribution map."
    )
    return [Section("Attribution gallery", text, blocks)]
