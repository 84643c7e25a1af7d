"""SoCo's part of `attribench report`: the curves of its metrics per method (paper Fig. 8/9 for soundness
and completeness; ROAD, Petsiuk et al.'s Deletion and Insertion, and the accuracy versions), and
`soco.validate`'s Hausdorff table (Table 1) with the synthetic linear test.

Figures and tables follow the core's grouping of runs (`group_runs`, as the leaderboards): one per metric,
options, dataset and model, with the newest result per method; a figure, table or section whose runs are
not in the store is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attribench_core import (
    Block,
    Figure,
    ReportInput,
    Result,
    RunGroup,
    Section,
    Table,
    figures,
    finite,
    group_runs,
    is_explainer,
)

from .validation import COMPARED, PAPER_TABLE_1

LINEAR = "linear:"
VALIDATE = "soco.validate"
NAMES = {
    "completeness": "Completeness",
    "soundness": "Soundness",
    "road": "ROAD (MoRF)",
    "deletion": "Deletion",
}


@dataclass(frozen=True)
class Plot:
    """One stored curve of a metric, drawn per method."""

    metric: str
    curve: str
    title: str
    ylabel: str


VALUE_BASED = (
    Plot("soco.soundness", "soundness", "Soundness vs fraction of pixels kept", "soundness"),
    Plot("soco.soundness", "soundness_vs_accuracy", "Soundness vs accuracy", "soundness"),
    Plot("soco.completeness", "completeness", "Completeness vs attribution threshold", "accuracy drop"),
)
ORDER_BASED = (
    Plot("soco.road", "morf", "ROAD MoRF", "accuracy"),
    Plot("soco.road", "lerf", "ROAD LeRF", "accuracy"),
    Plot("soco.deletion", "deletion", "Deletion (Petsiuk et al.)", "class probability"),
    Plot("soco.insertion", "insertion", "Insertion (Petsiuk et al.)", "class probability"),
    Plot("soco.deletion_accuracy", "deletion_accuracy", "Deletion (SoCo's, accuracy)", "accuracy"),
    Plot("soco.insertion_accuracy", "insertion_accuracy", "Insertion (accuracy)", "accuracy"),
)
LINEAR_PLOTS = (
    Plot(VALIDATE, "soundness", "Linear test: soundness vs fraction of features kept", "soundness"),
    Plot(
        VALIDATE,
        "soundness_accuracy_indicator",
        "Linear test: soundness (accuracy indicator) vs fraction of features kept",
        "soundness",
    ),
    Plot(VALIDATE, "completeness", "Linear test: completeness vs attribution threshold", "accuracy drop"),
)


def sections(report: ReportInput) -> list[Section]:
    """SoCo's sections, each only when the store holds runs for it."""
    by_metric: dict[str, list[RunGroup]] = {}
    for group in group_runs(report.runs):
        by_metric.setdefault(group.metric, []).append(group)

    def curve_figures(plots: tuple[Plot, ...]) -> list[Block]:
        return [
            figure for plot in plots for b in by_metric.get(plot.metric, []) for figure in _figure(b, plot)
        ]

    found = [
        Section(
            "SoCo: soundness and completeness",
            "Soundness: the share of each image's kept attribution that lies on pixels which raised the "
            "accuracy as the top-attributed pixels are added back 1 % at a time (the paper plots it against "
            "the accuracy reached). Completeness: the accuracy drop when the pixels whose normalised "
            "attribution is above a threshold are imputed. Higher is better for both.",
            curve_figures(VALUE_BASED),
        ),
        Section(
            "SoCo: ROAD, Deletion and Insertion",
            "Pixels removed or inserted by attribution order. ROAD: accuracy as the most (MoRF, lower is "
            "better) or least (LeRF) relevant pixels are imputed. Deletion and Insertion (Petsiuk et al.): "
            "the explained class's probability as the most relevant pixels are set to the fill (0 by "
            "default; lower is better) or inserted into a blurred canvas (higher is better). The accuracy "
            "versions (SoCo's Deletion, and its insertion counterpart) fill with 0 by default.",
            curve_figures(ORDER_BASED),
        ),
        Section(
            "SoCo: validation (Table 1 and the linear test)",
            "Minimal Hausdorff distance between each metric's curves for the original maps and their "
            "Remove and Introduce modifications, averaged over the three schemes (std over the schemes): a "
            "metric that sees attribution values separates the curves. The synthetic linear test compares "
            "the Shapley ground truth with its modified versions.",
            _validation_blocks(by_metric.get(VALIDATE, [])),
        ),
    ]
    return [section for section in found if section.blocks]


def _figure(group: RunGroup, plot: Plot, linear: bool = False) -> list[Figure]:
    """`plot.curve` of each method of the group (of each linear-test variant with `linear`) as one line;
    no figure when none has the curve."""
    stored = {
        label.removeprefix(LINEAR): r.curves[plot.curve]
        for label, r in group.results.items()
        if (label.startswith(LINEAR) if linear else is_explainer(label)) and plot.curve in r.curves
    }
    if not stored:
        return []
    fig, ax = figures.new_figure()
    figures.curves(
        ax,
        {label: (c.x, [finite(y) for y in c.y]) for label, c in stored.items()},
        xlabel=next(iter(stored.values())).x_name,
        ylabel=plot.ylabel,
    )
    caption = (
        f"Curve `{plot.curve}`: the mean over the synthetic test's {group.options.get('trials')} trials."
        if linear
        else f"On {group.dataset} / {group.model}; curve `{plot.curve}` of the newest run per method."
    )
    return [figures.render(fig, f"{plot.title} ({group.name})", caption)]


def _validation_blocks(validate: list[RunGroup]) -> list[Block]:
    """Per group the Hausdorff table; the linear test's table and curves from the newest group with them."""
    blocks: list[Block] = [_hausdorff_table(b) for b in validate if any(map(is_explainer, b.results))]
    linear = sorted(
        (b for b in validate if any(label.startswith(LINEAR) for label in b.results)),
        key=lambda b: b.run_ids[-1],
    )
    if linear:
        group = linear[-1]
        blocks.append(_linear_table(group))
        blocks += [figure for plot in LINEAR_PLOTS for figure in _figure(group, plot, linear=True)]
    return blocks


def _hausdorff_table(group: RunGroup) -> Table:
    def distances(values: dict[str, Any]) -> list[float | None]:
        return [finite(values.get(f"hausdorff_{name}{part}")) for name in COMPARED for part in ("", "_std")]

    paper = {
        f"hausdorff_{name}{part}": value
        for name, pair in PAPER_TABLE_1.items()
        for part, value in zip(("", "_std"), pair, strict=True)
    }
    return Table(
        f"Hausdorff distances ({group.name})",
        ["explainer", *(c for name in COMPARED for c in (NAMES[name], "± std")), "separation"],
        [
            [label, *distances(r.values), finite(r.value)]
            for label, r in group.results.items()
            if is_explainer(label)
        ]
        + [["paper (Table 1)", *distances(paper), None]],
        f"On {group.dataset} / {group.model}. separation: the smaller of Completeness and Soundness minus "
        "the larger of ROAD and Deletion (attribench's summary). The paper's row is its Table 1 (its own "
        "model and images).",
    )


def _linear_table(group: RunGroup) -> Table:
    """Per variant of the linear test: soundness (per-sample score indicator) with its std over the trials,
    soundness with the dataset-accuracy indicator, and completeness."""

    def spread(result: Result) -> float | None:
        u = result.uncertainty
        return None if u is None else finite((u.high - u.low) / 2)

    return Table(
        "Linear test per variant",
        ["variant", "soundness", "± std", "soundness (accuracy indicator)", "completeness"],
        [
            [
                label.removeprefix(LINEAR),
                finite(r.value),
                spread(r),
                finite(r.values.get("soundness_accuracy_indicator_mean")),
                finite(r.values.get("completeness_mean")),
            ]
            for label, r in group.results.items()
            if label.startswith(LINEAR)
        ],
        f"Mean over the steps and {group.options.get('trials')} trials (std over the trials); "
        f"from {group.name}.",
    )
