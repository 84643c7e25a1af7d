"""Provenance: where every number of the report comes from (runs, attribution groups, versions)."""

from __future__ import annotations

import datetime as dt
import platform
from collections import defaultdict
from importlib import metadata
from typing import Any

from attribench_core import __version__
from attribench_core.report.content import ReportInput, Section, Table, diagnostics_text, options_text


def run_date(run_id: str) -> str:
    """A run id (`20240131T120000123456Z`, UTC) as `2024-01-31 12:00:00 UTC`; unchanged if not one."""
    try:
        when = dt.datetime.strptime(run_id, "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return run_id
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def dataset_options_text(options: dict[str, Any] | None) -> str:
    """A dataset's options as `k = v` (sorted); an option left unset (None) is the dataset's default and
    is left out, and "default" stands for none set."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    return ", ".join(f"{k} = {v}" for k, v in sorted(given.items())) or "default"


def installed_version(package: str) -> str | None:
    """The version of `package` (a distribution, or "python") in this environment; None if absent."""
    if package == "python":
        return platform.python_version()
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions_table(report: ReportInput) -> Table:
    """Each package: the versions the runs recorded, and the one installed now."""
    recorded: dict[str, set[str]] = defaultdict(set)
    for run in report.runs:
        for package, version in run.provenance.get("versions", {}).items():
            recorded[package].add(str(version))
    packages = (
        set(recorded) | {"attribench", "python"} | {e.dist for e in report.registry.entries() if e.dist}
    )
    rows = [
        [package, ", ".join(sorted(recorded.get(package, ()))) or None, installed_version(package)]
        for package in sorted(packages)
    ]
    return Table("Versions", ["package", "recorded by the runs", "installed now"], rows)


def runs_table(report: ReportInput) -> Table:
    """One row per run, oldest first."""
    rows = []
    for run in report.runs:
        p = run.provenance
        rows.append(
            [
                run_date(run.run_id),
                run.metric,
                options_text(run.options),
                p.get("dataset"),
                p.get("model"),
                p.get("seed"),
                p.get("num_imgs"),
                p.get("device"),
                len(run.results),
            ]
        )
    columns = ["date", "metric", "options", "dataset", "model", "seed", "images", "device", "rows"]
    return Table("Runs", columns, rows, "Run ids are UTC timestamps; the results live under /results.")


def groups_table(report: ReportInput) -> Table:
    """One row per attribution group: what was explained, with which parameters, how many samples, and the
    per-map diagnostics its explainer reported (e.g. DeepLIFT's summation gap)."""
    rows = []
    for info in report.attribution_groups:
        a = info["attrs"]
        params = a.get("params") if isinstance(a.get("params"), dict) else {}
        rows.append(
            [
                a.get("explainer"),
                options_text(params),
                a.get("target"),
                a.get("dataset"),
                dataset_options_text(a.get("dataset_options")),
                a.get("model"),
                (a.get("weights_hash") or "")[:12] or None,
                a.get("seed"),
                info["n"],
                a.get("nonfinite_count", 0),
                diagnostics_text(info.get("diagnostics") or {}),
                a.get("created"),
            ]
        )
    columns = ["explainer", "parameters", "target", "dataset", "dataset options", "model", "weights"]
    columns += ["seed", "n", "non-finite", "diagnostics", "created"]
    caption = (
        "Diagnostics: per-map numbers an explainer reports, e.g. DeepLIFT's summation gap |Σ attributions − "
        "(f(x) − f(reference))| / |f(x) − f(reference)| (0 when the maps are exact DeepLIFT)."
    )
    return Table("Attribution groups", columns, rows, caption)


def sections(report: ReportInput) -> list[Section]:
    """The provenance section: the store, then the runs, the attribution groups and the versions."""
    size = report.store.nbytes() / 2**20 if report.store.path.exists() else 0.0
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"Store: {report.store.path.resolve()} ({size:.1f} MiB). Report made {made} by attribench "
        f"{__version__} on Python {platform.python_version()}."
    )
    return [Section("Provenance", text, [runs_table(report), groups_table(report), versions_table(report)])]
