"""SMERF's report sections: focus bars with their spread over buckets (paper Fig. 6a/8a), mean and minimum
over simple vs complex buckets (Fig. 2/8b), the success and wrong-focus grids (Fig. 7), saturation by the
number of objects (Fig. 6b), and the models' bucket-wise accuracy (Table 3).

Everything is derived from the per-bucket means that each result stores (its `buckets` table), merged over
the runs of one configuration (`group_runs` by the metric's options apart from `setting`; a newer run's
bucket wins), and aggregated with the metric's own functions, so a study run one setting at a time reports
the same as one run of `--setting all`. The accuracy table comes from the models' checks that every run saves
with its outcome (`StoredRun.models`), so the store is all a report needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attribench_core import (
    Block,
    Figure,
    ReportInput,
    Section,
    StoredRun,
    Table,
    figures,
    finite,
    group_runs,
    model_checks,
    passed_label,
)
from attribench_smerf import functional
from attribench_smerf.functional import BucketTable
from attribench_smerf.metrics import BUCKET_TABLE
from attribench_smerf.reproduction import PAPER_PAFL
from attribench_smerf.settings import BUCKETS, COMPLEX, SETTINGS, SIMPLE

SCORES = {"smerf.afl": ("pafl", "safl"), "smerf.iou": ("piou", "siou"), "smerf.mafl": ("pmafl", "smafl")}
GROUPS = {"simple": SIMPLE, "complex": COMPLEX}
NAN = float("nan")


def sections(report: ReportInput) -> list[Section]:
    """One section per SMERF metric and configuration in the store (newest first), then the models'
    accuracy."""
    out = []
    for metric, scores in SCORES.items():
        groups = group_runs(report.runs_of(metric), ignore=("setting",), by_data=False)
        for group in sorted(groups, key=lambda g: g.newest.run_id, reverse=True):
            out.append(metric_section(f"SMERF {group.name}", metric, scores, group.options, group.runs))
    accuracy = model_accuracy(report.runs)
    if accuracy is not None:
        out.append(Section("SMERF models: bucket-wise accuracy", ACCURACY_TEXT, [accuracy]))
    return out


# ------------------------------------------------------------------------------------------- shaping


def bucket_means(runs: Sequence[StoredRun], score: str) -> dict[str, BucketTable]:
    """Per result label, the mean of `score` per (setting, bucket) from the runs' `buckets` tables (oldest
    first: a newer run's bucket wins), in `functional.bucket_table`'s layout (means only)."""
    tables: dict[str, BucketTable] = {}
    for run in runs:
        for label, result in run.results.items():
            if BUCKET_TABLE in result.tables:
                means = tables.setdefault(label, {})
                for row in result.tables[BUCKET_TABLE].records():
                    means[str(row["setting"]), int(float(row["bucket"]))] = {"mean": float(row[score])}
    return {label: dict(sorted(table.items())) for label, table in tables.items()}


def without_tables(runs: Sequence[StoredRun]) -> list[str]:
    """The ids of runs saved before SMERF results held their `buckets` table (nothing to show of them)."""
    return [r.run_id for r in runs if not any(BUCKET_TABLE in x.tables for x in r.results.values())]


def in_group(table: BucketTable, group: str) -> BucketTable:
    return {key: v for key, v in table.items() if key[0] in GROUPS[group]}


def group_summaries(table: BucketTable) -> dict[str, dict[str, float]]:
    """Mean, std, min and count of the bucket means over the simple and over the complex settings."""
    return functional.simple_vs_complex(table, GROUPS)


def present_settings(tables: Mapping[str, BucketTable]) -> list[str]:
    """The settings that any method has buckets of, in the paper's order."""
    seen = {setting for table in tables.values() for setting, _ in table}
    return [s for s in SETTINGS if s in seen]


def success_grid(
    primary: Mapping[str, BucketTable], secondary: Mapping[str, BucketTable], settings: Sequence[str]
) -> list[list[dict[str, Any]]]:
    """Fig. 7 top: per method (row) and setting (column), `functional.success_fraction`'s share of the
    buckets with both roles where PAFL > 0.5, with Wilson's interval and the counts (`buckets` 0 and the
    share NaN where the setting has no such bucket)."""
    empty = {"fraction": NAN, "low": NAN, "high": NAN, "successes": 0, "buckets": 0}
    return [
        [success.get(s, empty) for s in settings]
        for success in (
            functional.success_fraction(table, secondary[label]) for label, table in primary.items()
        )
    ]


def wrong_focus_grid(
    primary: Mapping[str, BucketTable], secondary: Mapping[str, BucketTable], settings: Sequence[str]
) -> list[list[dict[str, Any]]]:
    """Fig. 7 bottom: per method and setting, `functional.wrong_focus`'s failures (SAFL > PAFL), buckets
    verdict, share and Wilson's interval (`buckets` 0 where the setting has none with both roles)."""
    empty = {"failures": 0, "buckets": 0, "failed": False, "fraction": NAN, "low": NAN, "high": NAN}
    return [
        [focus.get(s, empty) for s in settings]
        for focus in (functional.wrong_focus(table, secondary[label]) for label, table in primary.items())
    ]


def saturation_lines(
    tables: Mapping[str, BucketTable], group: str
) -> dict[str, tuple[list[float], list[float | None]]]:
    """Fig. 6b: per method, the mean primary score over the group's buckets against their number of
    objects; methods without a bucket in the group are left out."""
    lines = {}
    for label, table in tables.items():
        by_count = functional.saturation(in_group(table, group))
        if by_count:
            counts = sorted(by_count)
            lines[label] = ([float(n) for n in counts], [finite(by_count[n]["mean"]) for n in counts])
    return lines


def model_accuracy(runs: Sequence[StoredRun]) -> Table | None:
    """Table 3: the bucket-wise test accuracy of every SMERF model (per weights hash) that a run used, from
    the check saved by the newest such run; None when no run used one."""
    checks = {key: check for key, check in model_checks(runs).items() if key[0].startswith("smerf.")}
    if not checks:
        return None
    rows = []
    for (model, digest), check in sorted(checks.items()):
        accuracy = {row["bucket"]: row["accuracy"] for row in check.get("table", [])}
        rows.append(
            [
                model,
                digest[:10],
                *map(accuracy.get, BUCKETS),
                check.get("min_bucket_accuracy"),
                passed_label(check),
            ]
        )
    return Table("Test accuracy per bucket", ["model", "weights", *map(str, BUCKETS), "min", "passed"], rows)


# ----------------------------------------------------------------------------------------- sections

ACCURACY_TEXT = (
    "Accuracy of each SMERF model on its test split, per bucket (paper Table 3), as checked against the "
    "gate when the model was trained, and saved with every run that used it (the newest run's check per "
    "model and weights is shown). 'not checked': weights given with --weights are not checked."
)
POSTPROCESS = {"paper": "SMERF's per-family maps", "uniform": "|a| summed over channels for every method"}


def metric_section(
    title: str, metric: str, scores: tuple[str, str], options: Mapping[str, Any], runs: list[StoredRun]
) -> Section:
    """Tables and figures of one SMERF metric over the runs of one configuration."""
    p_name, s_name = scores
    primary, secondary = bucket_means(runs, p_name), bucket_means(runs, s_name)
    summaries = {
        label: (group_summaries(primary[label]), group_summaries(secondary[label])) for label in primary
    }
    settings = present_settings(primary)
    text = (
        f"{len(runs)} run(s) ({', '.join(r.run_id for r in runs)}); "
        f"settings: {', '.join(settings) or 'none'}; "
        f"model variant {options.get('variant')}, {options.get('background')} background, "
        f"{options.get('preset')} preset, maps post-processed as {options.get('postprocess')} "
        f"({POSTPROCESS.get(options.get('postprocess'), '')}), blur {options.get('blur')}. "
        f"{p_name.upper()}: on what the model uses; {s_name.upper()}: on what it ignores. Values are means "
        "over images per bucket, then over buckets."
    )
    old = without_tables(runs)
    if old:
        text += f" Left out, saved before results held per-bucket tables (rerun them): {', '.join(old)}."
    blocks: list[Block] = [group_table(p_name, summaries, with_paper=metric == "smerf.afl")]
    blocks += _minimum_figure(p_name, summaries)
    blocks += [f for f in (_focus_figure(scores, summaries, g) for g in GROUPS) if f is not None]
    if metric == "smerf.afl":
        blocks += _grids(primary, secondary, settings)
        blocks += [f for f in (_saturation_figure(p_name, primary, g) for g in GROUPS) if f is not None]
    return Section(title, text, blocks)


def group_table(
    p_name: str, summaries: Mapping[str, tuple[dict, dict]], *, with_paper: bool = False
) -> Table:
    """Fig. 2/8b: per method, the mean and the minimum primary score over simple and complex buckets
    (with the paper's values beside ours for AFL)."""
    columns = ["method", "simple mean", "simple min", "complex mean", "complex min"]
    rows = []
    for label, (p, _) in summaries.items():
        row = [label, *(finite(p[g][k]) for g in GROUPS for k in ("mean", "min"))]
        if with_paper:
            row += list(PAPER_PAFL.get(label.split(".", 1)[-1], (None,) * 4))
        rows.append(row)
    if with_paper:
        columns += [f"paper {c}" for c in columns[1:]]
    return Table(
        f"{p_name.upper()} over buckets: simple vs complex settings",
        columns,
        rows,
        "The minimum over buckets is the paper's headline (Fig. 2/8b): a method can look fine on average "
        "and fail on some buckets."
        + (" Paper values read off the authors' notebook (±0.02)." if with_paper else ""),
    )


def _panels(count: int) -> tuple[Any, list[Any]]:
    """A figure with `count` axes side by side, on one y scale."""
    fig, grid = figures.new_grid(1, count, cell=4.0)
    axes = list(grid[0])
    for ax in axes[1:]:
        ax.sharey(axes[0])
    return fig, axes


def _minimum_figure(p_name: str, summaries: Mapping[str, tuple[dict, dict]]) -> list[Block]:
    groups = [g for g in GROUPS if any(p[g]["buckets"] for p, _ in summaries.values())]
    if not groups:
        return []
    fig, axes = _panels(len(groups))
    for ax, group in zip(axes, groups, strict=True):
        labels = [label for label, (p, _) in summaries.items() if p[group]["buckets"]]
        minima = [summaries[label][0][group]["min"] for label in labels]
        figures.bars(ax, labels, minima, ylabel=f"min {p_name.upper()} over buckets")
        ax.set_title(f"{group} settings", fontsize=9)
    return [
        figures.render(
            fig,
            f"Minimum {p_name.upper()} over buckets, simple vs complex (paper Fig. 2/8b)",
            "Each bar is a method's worst bucket.",
        )
    ]


def _focus_figure(
    scores: tuple[str, str], summaries: Mapping[str, tuple[dict, dict]], group: str
) -> Figure | None:
    """Fig. 6a (simple) / 8a (complex): primary and secondary score per method, ± std over buckets."""
    labels = [label for label, (p, _) in summaries.items() if p[group]["buckets"]]
    if not labels:
        return None
    fig, axes = _panels(2)
    for ax, name, side in zip(axes, scores, (0, 1), strict=True):
        stats = [summaries[label][side][group] for label in labels]
        means = [s["mean"] for s in stats]
        stds = [0.0 if s["std"] != s["std"] else s["std"] for s in stats]
        low = [m - d for m, d in zip(means, stds, strict=True)]
        high = [m + d for m, d in zip(means, stds, strict=True)]
        figures.bars(ax, labels, means, low, high, ylabel=f"mean {name.upper()} over buckets")
    number = "6a" if group == "simple" else "8a"
    return figures.render(
        fig,
        f"{scores[0].upper()} and {scores[1].upper()} per method, {group} settings (paper Fig. {number})",
        "Mean over the buckets; error bars: standard deviation over the buckets.",
    )


def _grids(
    primary: Mapping[str, BucketTable], secondary: Mapping[str, BucketTable], settings: list[str]
) -> list[Block]:
    """Fig. 7 as a figure of two method x setting heatmaps, and as tables with the exact values and counts
    (which the heatmaps round or leave out)."""
    if not settings:
        return []
    labels = list(primary)
    success_cells = success_grid(primary, secondary, settings)
    focus = wrong_focus_grid(primary, secondary, settings)
    success, share = (
        np.array([[c["fraction"] for c in row] for row in grid], dtype=np.float64).reshape(len(labels), -1)
        for grid in (success_cells, focus)
    )
    fig, axes = figures.new_grid(1, 2, cell=1.5 + 0.45 * max(len(labels), len(settings)))
    panels = (("success: PAFL > 0.5", success, "Greens"), ("wrong focus: SAFL > PAFL", share, "Reds"))
    for ax, (title, matrix, cmap) in zip(axes[0], panels, strict=True):
        figures.heatmap(ax, matrix, labels, settings, vmin=0.0, vmax=1.0, cmap=cmap)
        ax.set_title(title, fontsize=9)
    columns = ["method", *settings]
    return [
        figures.render(
            fig,
            "Success and wrong focus per setting (paper Fig. 7)",
            "Share of the buckets with both a relevant and an irrelevant object where mean PAFL > 0.5 "
            "(left) and where mean SAFL > mean PAFL (right); blank: no such bucket.",
        ),
        Table(
            "Success per setting (paper Fig. 7 top)",
            columns,
            [[label, *map(_success, row)] for label, row in zip(labels, success_cells, strict=True)],
            "Share of the buckets with both a relevant and an irrelevant object where mean PAFL > 0.5, "
            "with its Wilson 95 % interval over those buckets (count in parentheses).",
        ),
        Table(
            "Wrong focus per setting (paper Fig. 7 bottom)",
            columns,
            [[label, *map(_verdict, row)] for label, row in zip(labels, focus, strict=True)],
            "Buckets where mean SAFL > mean PAFL, out of those with both; 'fails' when more than half; "
            "the share's Wilson 95 % interval. A random map fails in Simple-FR and Complex-FR by area "
            "alone (README, chance levels).",
        ),
    ]


def _interval(cell: Mapping[str, Any]) -> str:
    return f"[{cell['low']:.2f}, {cell['high']:.2f}]"


def _success(cell: Mapping[str, Any]) -> str | None:
    if not cell["buckets"]:
        return None
    return f"{cell['fraction']:.2f} {_interval(cell)} ({cell['successes']}/{cell['buckets']})"


def _verdict(focus: Mapping[str, Any]) -> str | None:
    if not focus["buckets"]:
        return None
    return (
        f"{'fails' if focus['failed'] else 'ok'} ({focus['failures']}/{focus['buckets']}) {_interval(focus)}"
    )


def _saturation_figure(p_name: str, primary: Mapping[str, BucketTable], group: str) -> Figure | None:
    lines = saturation_lines(primary, group)
    if not lines:
        return None
    fig, ax = figures.new_figure()
    figures.curves(ax, lines, xlabel="objects in the image", ylabel=f"mean {p_name.upper()}")
    return figures.render(
        fig,
        f"{p_name.upper()} against the number of objects, {group} settings"
        + (" (paper Fig. 6b)" if group == "simple" else ""),
        "Mean over the buckets whose images hold that many objects.",
    )
