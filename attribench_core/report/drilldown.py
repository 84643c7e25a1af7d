"""Per-image drill-down: for a leaderboard and one of its methods, the images it scored best and worst on,
each with the method's attribution map from the store, so a number can be checked against what it measures.

By default every leaderboard shows its top-ranked method; `attribench report --drill METRIC:EXPLAINER`
chooses instead. Scores are the per-sample values the paired comparisons use (see `paired.samples`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attribench_core.errors import AttribenchError, UsageProblem
from attribench_core.report import figures, gallery
from attribench_core.report.content import Figure, ReportInput, Section
from attribench_core.report.leaderboard import Board, boards
from attribench_core.report.paired import Samples, board_runs, samples
from attribench_core.store import GroupKey

SHOWN = 3  # images at each end


@dataclass(frozen=True)
class Drill:
    """One method on one leaderboard."""

    board: Board
    label: str


def extremes(scores: Samples, higher_is_better: bool | None, k: int = SHOWN) -> tuple[np.ndarray, np.ndarray]:
    """The dataset indices of the `k` best and the `k` worst scores (best first, worst first); ties go to the
    lower index. Unknown direction: the highest count as best."""
    better_first = -scores.values if higher_is_better is not False else scores.values
    order = np.lexsort((scores.index, better_first))
    worst_first = np.lexsort((scores.index, -better_first))
    return scores.index[order[:k]], scores.index[worst_first[:k]]


def _params_of(label: str) -> dict[str, str]:
    given = label.partition(":")[2]
    return dict(part.split("=", 1) for part in given.split(",") if "=" in part)


def _matches(report: ReportInput, label: str, params: dict[str, Any]) -> bool:
    """Whether stored parameter values (defaults included) are those of the label's explainer."""
    from attribench_core.runner import parse_explainer

    try:
        resolved = parse_explainer(report.registry, label).resolved
    except AttribenchError:
        return False
    return {k: str(v) for k, v in resolved.items()} == {k: str(v) for k, v in params.items()}


def group_path(report: ReportInput, drill: Drill) -> str | None:
    """The attribution group holding the label's maps on the board's dataset and model: among the groups of
    the run's dataset and model with the label's explainer and parameters, the one (or the one whose full
    parameters the label resolves to, when several share the given ones)."""
    runs = [r for r in board_runs(report, drill.board) if drill.label in r.results]
    prefix = runs[-1].provenance.get("group", "") + "/" if runs else None
    name, given = drill.label.partition(":")[0], _params_of(drill.label)
    found = []
    for info in report.attribution_groups:
        attrs = info["attrs"]
        params = attrs.get("params") if isinstance(attrs.get("params"), dict) else {}
        if (
            prefix
            and info["path"].startswith(prefix)
            and attrs.get("explainer") == name
            and all(str(params.get(k)) == v for k, v in given.items())
        ):
            found.append((info["path"], params))
    if len(found) > 1:
        found = [(path, params) for path, params in found if _matches(report, drill.label, params)]
    return found[0][0] if len(found) == 1 else None


def figure(report: ReportInput, drill: Drill) -> Figure | str:
    """The drill-down figure (best images on the left rows, worst below), or why there is none."""
    scores = samples(report, drill.board).get(drill.label)
    if scores is None:
        return f"{drill.label} on {drill.board.name}: its run stored no per-sample values."
    path = group_path(report, drill)
    if path is None:
        return f"{drill.label} on {drill.board.name}: its attribution maps are not in the store."
    key = GroupKey(*path.split("/")[1:])
    best, worst = extremes(scores, drill.board.higher_is_better)
    shown = np.intersect1d(np.concatenate([best, worst]), report.store.completed(key))
    if not len(shown):
        return f"{drill.label} on {drill.board.name}: its maps of the scored images are not in the store."
    stored = report.store.read(key, shown)
    attrs = next(g["attrs"] for g in report.attribution_groups if g["path"] == path)
    inputs, why_not = gallery.rebuilt_inputs(report, attrs, shown)
    score_of = dict(zip(scores.index.tolist(), scores.values.tolist(), strict=True))
    ends = [("best", [i for i in best if i in shown]), ("worst", [i for i in worst if i in shown])]
    per_image = 2 if inputs is not None else 1
    fig, axes = figures.new_grid(2 * per_image, max(len(best), len(worst)))
    for end, (title, chosen) in enumerate(ends):
        for column, i in enumerate(chosen):
            row = int(np.searchsorted(shown, i))
            top = axes[end * per_image, column]
            if inputs is not None:
                top.imshow(gallery.display_image(inputs.images[row], inputs.value_range), cmap="gray")
                gallery.outline(top, inputs.primary[row])
            heat, limit = gallery.signed_map(stored.attribution[row])
            axes[end * per_image + per_image - 1, column].imshow(heat, cmap="bwr", vmin=-limit, vmax=limit)
            top.set_title(f"{title} {column + 1}: #{i}, {score_of[i]:.3g}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    caption = (
        f"Top rows: the {len(best)} best-scored images (input, then the map); bottom rows: the {len(worst)} "
        "worst. Titles: rank at that end, dataset index, per-sample score. Maps as in the gallery."
    )
    return figures.render(fig, f"{drill.label} on {drill.board.name}", f"{caption} {why_not}".strip())


def top_methods(all_boards: list[Board]) -> list[Drill]:
    """Every ranked board's best method (the first by name among ties)."""
    out = []
    for board in all_boards:
        ranks = board.ranks()
        if ranks:
            out.append(Drill(board, min(ranks, key=lambda label: (ranks[label], label))))
    return out


def requested(all_boards: list[Board], wanted: list[str]) -> list[Drill]:
    """The drills `METRIC:EXPLAINER` asks for, on every board of METRIC holding that explainer's row; a usage
    error naming what is available when one matches nothing."""
    out = []
    for text in wanted:
        metric, _, label = text.partition(":")
        found = [Drill(b, label) for b in all_boards if b.metric == metric and label in b.results]
        if not found:
            held = sorted({lbl for b in all_boards if b.metric == metric for lbl in b.results})
            available = f"its rows: {', '.join(held)}" if held else "the store has no results of that metric"
            raise UsageProblem(
                f"--drill {text}: no leaderboard of {metric} has a row {label!r} ({available})."
            )
        out += found
    return out


def sections(report: ReportInput, wanted: list[str] | None = None) -> list[Section]:
    """The drill-down section: one figure per drill, and a line for each one that cannot be drawn."""
    all_boards = boards(report)
    drills = requested(all_boards, wanted) if wanted else top_methods(all_boards)
    if not drills:
        return []
    made = [figure(report, drill) for drill in drills]
    shown = [f for f in made if isinstance(f, Figure)]
    text = (
        f"For {'each method asked for' if wanted else 'the top-ranked method of each leaderboard'}: the "
        f"{SHOWN} images it scored best and the {SHOWN} it scored worst, with its attribution maps, so a "
        "number can be checked against the images behind it."
    )
    missing = [m for m in made if isinstance(m, str)]
    if missing:
        text += "\n\nNot shown: " + " ".join(missing)
    return [Section("Per-image drill-down", text, list(shown))]
