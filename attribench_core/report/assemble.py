"""Assembling a report: read the store, build the core's sections and every plugin's, write the files.

Order: the method × metric matrix, leaderboards, paired comparisons, rank agreement, the randomisation
curves, the plugins' sections (in plugin load order), the per-image drill-down, the attribution gallery,
provenance. Every section builder, the core's included, runs guarded: one that raises (or returns
something other than a list of sections) becomes a one-line note in the report, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from attribench_core.registry import Registry
from attribench_core.report import (
    agreement,
    drilldown,
    gallery,
    leaderboard,
    matrix,
    paired,
    provenance,
    randomisation,
    render,
)
from attribench_core.report.content import ReportInput, Section
from attribench_core.report.reading import read_input
from attribench_core.store import AttributionStore

Builder = Callable[[ReportInput], list[Section]]
FORMATS = ("html", "md")


def guarded(title: str, build: Builder, report: ReportInput) -> tuple[list[Section], str | None]:
    """The sections `build` returns, or one note section (and the note) when it fails."""
    try:
        built = build(report)
        if not isinstance(built, list) or not all(isinstance(s, Section) for s in built):
            raise TypeError(f"returned {type(built).__name__}, not a list of Section")
        return built, None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        note = f"{title} could not be built: {type(exc).__name__}: {first}"
        return [Section(title, note)], note


def plugin_builders(registry: Registry) -> list[tuple[str, Builder]]:
    """Every registered report function, loaded on call (a failing import is a note like any failure)."""
    return [
        (f"Report section {entry.qualified}", lambda report, entry=entry: entry.create(report))
        for entry in registry.entries("report")
    ]


def build_sections(report: ReportInput, drill: tuple[str, ...] = ()) -> tuple[list[Section], list[str]]:
    """All sections of the report, and the notes of those that failed; `drill` (`METRIC:EXPLAINER`) chooses
    the drill-downs (default: each leaderboard's top method)."""
    builders: list[tuple[str, Builder]] = [
        ("Method × metric matrix", matrix.sections),
        ("Leaderboards", leaderboard.sections),
        ("Paired comparisons", paired.sections),
        ("Rank agreement", agreement.sections),
        ("Randomisation curves", randomisation.sections),
        *plugin_builders(report.registry),
        ("Per-image drill-down", lambda r: drilldown.sections(r, list(drill))),
        ("Attribution gallery", gallery.sections),
        ("Provenance", provenance.sections),
    ]
    sections: list[Section] = []
    notes: list[str] = []
    for title, build in builders:
        built, note = guarded(title, build, report)
        sections += built
        notes += [note] if note else []
    return sections, notes


def make_report(
    store_path: Path,
    registry: Registry,
    out: Path,
    formats: tuple[str, ...] = FORMATS,
    drill: tuple[str, ...] = (),
) -> tuple[list[Path], list[str]]:
    """Read the store (under its shared lock, so no merge is seen half-done), build and write the report.

    Returns the files written and the notes of sections that could not be built. A `drill` that names no
    leaderboard row is a usage error, raised before anything is written.
    """
    store = AttributionStore(store_path)
    with store.lock(shared=True):
        report = read_input(store, registry)
        drilldown.requested(leaderboard.boards(report), list(drill))
        sections, notes = build_sections(report, drill)
    subtitle = f"Store {store.path} — {len(report.runs)} run(s), {len(sections)} section(s)."
    return render.write(sections, out, formats, subtitle), notes
