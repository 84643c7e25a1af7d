"""BAM's report section: the checks of the models, MCS, IDR and IIR per method with their 95 % intervals, RMCS
over i (the number of scene classes the dog was added to) with the scene_k models' reliance on the dog, and
the TCAV scores of the obj and scene models with their permutation tests.

Each metric is shown from the newest results of its newest group of runs (`newest_group` of `group_runs`:
the runs with its newest run's options, dataset and model); a metric with no run leaves its blocks out. The
model checks are those these runs saved (`StoredRun.models`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attribench_core import (
    Block,
    Figure,
    ReportInput,
    Result,
    Section,
    StoredRun,
    Table,
    figures,
    finite,
    group_runs,
    model_checks,
    newest_group,
    passed_label,
    uncertainty_bounds,
)

RATES = {
    "bam.mcs": "MCS: g(obj model) − g(scene model) on the object",
    "bam.idr": "IDR: share of images where the scene model's g is higher without the object than with it",
    "bam.iir": "IIR: share of scenes whose g changes by < 10 % (--threshold) under a patch that keeps the "
    "prediction and moves the logits by less than --max-logit-distance",
}
METRICS = (*RATES, "bam.rmcs", "bam.tcav")
RMCS_STEPS = range(1, 10)
SCENE_K = range(1, 11)

Results = dict[str, Result]


def sections(report: ReportInput) -> list[Section]:
    """The BAM section, or [] when the store holds no BAM run."""
    groups = {m: newest_group(group_runs(report.runs_of(m))) for m in METRICS}
    results = {m: g.results for m, g in groups.items() if g is not None and g.results}
    if not results:
        return []
    runs = [run for g in groups.values() if g is not None for run in g.runs]
    checks = check_rows(sorted(runs, key=lambda run: (run.run_id, run.metric)))
    blocks: list[Block] = [Table("Model checks", CHECK_COLUMNS, checks, CHECK_CAPTION)] if checks else []
    rates = {m: results[m] for m in RATES if m in results}
    if rates:
        blocks.append(Table("Scores per method", SCORE_COLUMNS, score_rows(rates), SCORE_CAPTION))
        blocks += [_score_figure(m, r) for m, r in rates.items() if _finite_rows(r)]
    if "bam.rmcs" in results:
        blocks += _rmcs_blocks(results["bam.rmcs"])
    if "bam.tcav" in results:
        blocks += _tcav_blocks(results["bam.tcav"])
    return [Section("BAM: relative feature importance", SECTION_TEXT, blocks)]


# ------------------------------------------------------------------------------------------- shaping


def check_rows(runs: list[StoredRun]) -> list[list[Any]]:
    """Per model and weights hash used by `runs` (oldest first), the check the newest of them saved:
    accuracy with and without the object, and whether it passed."""
    return [
        [
            model,
            digest[:10],
            finite(check.get("accuracy")),
            finite(check.get("accuracy_without_object")),
            passed_label(check),
        ]
        for (model, digest), check in sorted(model_checks(runs).items())
    ]


def score_rows(rates: Mapping[str, Results]) -> list[list[Any]]:
    """Per metric and method: value, CI, images kept and dropped."""
    rows = []
    for metric, results in rates.items():
        for label, result in results.items():
            low, high = uncertainty_bounds(result)
            rows.append(
                [
                    metric,
                    label,
                    finite(result.value),
                    low,
                    high,
                    result.n,
                    result.n_skipped,
                ]
            )
    return rows


def rmcs_lines(results: Results) -> dict[str, tuple[list[float], list[float | None]]]:
    """Per method, the contrast g(scene_i) − g(scene10) against i (None where no image counted)."""
    return {
        label: ([float(i) for i in RMCS_STEPS], [finite(r.values.get(f"rmcs_{i}")) for i in RMCS_STEPS])
        for label, r in results.items()
        if any(finite(r.values.get(f"rmcs_{i}")) is not None for i in RMCS_STEPS)
    }


def rmcs_rows(results: Results) -> list[list[Any]]:
    rows = []
    for label, result in results.items():
        values, (low, high) = result.values, uncertainty_bounds(result)
        decreasing = finite(values.get("decreasing"))
        rows.append(
            [
                label,
                finite(result.value),
                low,
                high,
                None if decreasing is None else ("yes" if decreasing else "no"),
                finite(values.get("positive_share")),
            ]
        )
    return rows


def reliance_rows(results: Results) -> list[list[Any]]:
    """Per k, scene_k's drop in bedroom probability without the dog (a property of the models: the same
    for every method of a run, so the first that has it)."""
    values = next((r.values for r in results.values() if "dog_reliance_1" in r.values), None)
    if values is None:
        return []
    return [[k, finite(values.get(f"dog_reliance_{k}"))] for k in SCENE_K]


def tcav_rows(result: Result) -> list[list[Any]]:
    """Per model the TCAV score, the random-vs-random score, the permutation test's p and the CAV accuracy;
    then the contrast with its range over random sets."""
    values = result.values
    low, high = uncertainty_bounds(result)
    return [
        *(
            [
                label,
                finite(values.get(f"tcav_{name}")),
                finite(values.get(f"tcav_null_{name}")),
                finite(values.get(f"p_{name}")),
                finite(values.get(f"cav_accuracy_{name}")),
                None,
                None,
            ]
            for name, label in (("obj", "obj (dog logit)"), ("scene", "scene (bedroom logit)"))
        ),
        ["obj − scene", finite(values.get("tcav")), None, None, None, low, high],
    ]


def _finite_rows(results: Results) -> list[tuple[str, Result]]:
    return [(label, r) for label, r in results.items() if finite(r.value) is not None]


# ----------------------------------------------------------------------------------------- blocks

SECTION_TEXT = (
    "BAM pastes objects onto scenes: a model trained on object labels must rely on the object, one trained "
    "on scene labels must not, so the relative importance of the object region is known. g is the mean of "
    "the method's normalised positive map over the object's mask; only images that every model of a "
    "comparison classifies correctly count (the others are dropped). Higher is better for every score."
)
CHECK_COLUMNS = ["model", "weights", "val accuracy", "object removed", "passed"]
CHECK_CAPTION = (
    "Each model's check on its val split, saved by the runs shown: accuracy on the composites and, for obj "
    "and scene, on the same scenes with the object removed. To pass, the obj model must fall to about "
    "chance without the object and the scene model must keep its accuracy (the ground truth), besides "
    "reaching the recipe's accuracy gate. 'not checked': weights given with --weights."
)
SCORE_COLUMNS = ["metric", "method", "value", "CI low", "CI high", "images", "dropped"]
SCORE_CAPTION = " ".join(f"{text}." for text in RATES.values()) + (
    " CI: 95 %, bootstrap over the images for MCS, Wilson's score interval for the rates IDR and IIR."
)


def _score_figure(metric: str, results: Results) -> Figure:
    shown = _finite_rows(results)
    low, high = zip(*(uncertainty_bounds(r) for _, r in shown), strict=True)
    fig, ax = figures.new_figure()
    values = [finite(r.value) for _, r in shown]
    figures.bars(ax, [label for label, _ in shown], values, low, high, ylabel=metric.split(".")[1].upper())
    kind = "bootstrap CI" if metric == "bam.mcs" else "Wilson interval"
    return figures.render(fig, f"{metric} per method", f"{RATES[metric]}; error bars: 95 % {kind}.")


def _rmcs_blocks(results: Results) -> list[Block]:
    blocks: list[Block] = [
        Table(
            "RMCS per method",
            ["method", "mean RMCS", "CI low", "CI high", "decreasing in i", "share of i with RMCS > 0"],
            rmcs_rows(results),
            "Mean over dogs in bedrooms of the nine contrasts g(scene_i) − g(scene10), 95 % bootstrap CI; "
            "a method following the models should give positive contrasts that decrease with i.",
        )
    ]
    reliance = reliance_rows(results)
    if reliance:
        blocks.append(
            Table(
                "Reliance of the scene_k models on the dog",
                ["k", "drop in p(bedroom) without the dog"],
                reliance,
                "RMCS's ground truth: mean over the evaluated dogs in bedrooms of scene_k's bedroom "
                "probability with the dog minus without it; RMCS assumes it falls as k grows.",
            )
        )
    lines = rmcs_lines(results)
    if lines:
        fig, ax = figures.new_figure()
        figures.curves(ax, lines, xlabel="i (scene classes with the dog)", ylabel="g(scene_i) − g(scene10)")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        blocks.append(
            figures.render(fig, "RMCS over i", "Each pair's images are those both models classify correctly.")
        )
    return blocks


def _tcav_blocks(results: Results) -> list[Block]:
    """TCAV uses no attributions: every label of a run holds the same values, so the first one is shown."""
    result = next(iter(results.values()))
    rows = tcav_rows(result)
    blocks: list[Block] = [
        Table(
            "TCAV score of the dog concept",
            ["model", "TCAV score", "random vs random", "p", "CAV accuracy", "range low", "range high"],
            rows,
            "Share of dogs in bedrooms whose target logit rises along the dog concept's activation vector "
            "(mean over the random sets); random vs random: the same score for one more random set in "
            "place of the concept; p: two-sided permutation test of the two (Kim et al. 2018); the "
            "contrast's range is over the random sets, not a confidence interval. The obj model should "
            "score higher than the scene model.",
        )
    ]
    shown = [row for row in rows if row[1] is not None]
    if shown:
        fig, ax = figures.new_figure(width=4.8)
        figures.bars(
            ax,
            [row[0] for row in shown],
            [row[1] for row in shown],
            [row[5] for row in shown],
            [row[6] for row in shown],
            ylabel="TCAV score",
        )
        blocks.append(
            figures.render(fig, "TCAV scores", "Error bar on the contrast: range over random sets.")
        )
    return blocks
