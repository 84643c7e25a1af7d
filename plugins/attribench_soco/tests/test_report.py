"""SoCo's report sections from small real runs (the core's toy pair, 6 images) read back from the store:
titles, non-empty PNG curves, the Hausdorff and linear tables equal to the stored payloads, and nothing
without SoCo runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import attribench_methods.plugin
import attribench_soco.plugin
import pytest
from attribench_soco.report import sections
from attribench_soco.validation import PAPER_TABLE_1

from attribench_core.report.content import Figure, ReportInput, Section, StoredRun, Table
from attribench_core.report.reading import read_input
from attribench_core.runner import RunOutcome, RunRequest, run
from attribench_core.store import AttributionStore
from attribench_core.testing import plugin_registry

METRICS = (
    "soundness",
    "completeness",
    "road",
    "deletion",
    "insertion",
    "deletion_accuracy",
    "insertion_accuracy",
    "validate",
)
EXPLAINERS = ("methods.gradient", "methods.random")
ORDER = ("completeness", "soundness", "road", "deletion")  # the table's columns
TITLES = {
    "SoCo: soundness and completeness": [
        "Soundness vs fraction of pixels kept (soco.soundness)",
        "Soundness vs accuracy (soco.soundness)",
        "Completeness vs attribution threshold (soco.completeness)",
    ],
    "SoCo: ROAD, Deletion and Insertion": [
        "ROAD MoRF (soco.road)",
        "ROAD LeRF (soco.road)",
        "Deletion (Petsiuk et al.) (soco.deletion)",
        "Insertion (Petsiuk et al.) (soco.insertion)",
        "Deletion (SoCo's, accuracy) (soco.deletion_accuracy)",
        "Insertion (accuracy) (soco.insertion_accuracy)",
    ],
    "SoCo: validation (Table 1 and the linear test)": [
        "Hausdorff distances (soco.validate)",
        "Linear test per variant",
        "Linear test: soundness vs fraction of features kept (soco.validate)",
        "Linear test: soundness (accuracy indicator) vs fraction of features kept (soco.validate)",
        "Linear test: completeness vs attribution threshold (soco.validate)",
    ],
}


@pytest.fixture(scope="module")
def registry():
    return plugin_registry({"methods": attribench_methods.plugin, "soco": attribench_soco.plugin})


@pytest.fixture(scope="module")
def stored(registry, tmp_path_factory) -> tuple[Path, dict[str, RunOutcome]]:
    """A store of one run of every SoCo metric, and the outcomes those runs returned."""
    path, outcomes = tmp_path_factory.mktemp("report") / "s.h5", {}
    for metric in METRICS:
        validate = metric == "validate"  # its 28 imputing sweeps per explainer: kept small
        request = RunRequest(
            f"soco.{metric}",
            explainers=list(EXPLAINERS[:1] if validate else EXPLAINERS),
            num_imgs=2 if validate else 6,
            dataset="core.toy",
            model="core.toy_cnn",
            store=path,
            options={"trials": 2} if validate else {},
        )
        outcomes[request.metric] = run(registry, request)
    return path, outcomes


@pytest.fixture(scope="module")
def report(registry, stored) -> ReportInput:
    return read_input(AttributionStore(stored[0]), registry)


def test_every_result_reads_back_from_the_store_as_it_was_computed(report, stored):
    """Values, curves, uncertainty, per-sample values and extra rows (`linear:*`) of every SoCo metric."""
    for metric, outcome in stored[1].items():
        (saved,) = report.runs_of(metric)
        assert saved.results == outcome.results and saved.higher_is_better == outcome.higher_is_better


@pytest.fixture(scope="module")
def found(report) -> dict[str, Section]:
    return {s.title: s for s in sections(report)}


def blocks_of(found: dict[str, Section], kind: type) -> dict[str, Figure | Table]:
    return {b.title: b for s in found.values() for b in s.blocks if isinstance(b, kind)}


def test_every_curve_is_a_png_figure(found):
    assert {title: [b.title for b in s.blocks] for title, s in found.items()} == TITLES
    for figure in blocks_of(found, Figure).values():
        assert figure.png.startswith(b"\x89PNG") and len(figure.png) > 5000
        assert "core.toy / core.toy_cnn" in figure.caption or "linear" in figure.title.lower()


def test_the_hausdorff_table_holds_the_payload_next_to_the_paper(report, found):
    table = blocks_of(found, Table)["Hausdorff distances (soco.validate)"]
    payload = report.runs_of("soco.validate")[-1].results
    rows = {row[0]: row[1:] for row in table.rows}
    label = EXPLAINERS[0]
    assert set(rows) == {label, "paper (Table 1)"}
    values = payload[label].values
    expected = [values[f"hausdorff_{name}{part}"] for name in ORDER for part in ("", "_std")]
    assert rows[label] == [*expected, payload[label].value]
    assert rows["paper (Table 1)"] == [v for name in ORDER for v in PAPER_TABLE_1[name]] + [None]


def test_the_linear_table_holds_the_extra_rows(report, found):
    table = blocks_of(found, Table)["Linear test per variant"]
    payload = report.runs_of("soco.validate")[-1].results
    assert len(table.rows) == 7
    for variant, soundness, std, by_accuracy, completeness in table.rows:
        row = payload[f"linear:{variant}"]
        assert soundness == row.value and row.uncertainty.kind == "std"
        assert by_accuracy == row.values["soundness_accuracy_indicator_mean"]
        assert completeness == row.values["completeness_mean"]
        assert std == pytest.approx((row.uncertainty.high - row.uncertainty.low) / 2)


def test_runs_that_differ_in_options_get_a_figure_each(report):
    deletion = report.runs_of("soco.deletion")
    noisier = [
        dataclasses.replace(
            r, run_id=r.run_id + "b", payload={**r.payload, "options": {**r.options, "noise": 0.1}}
        )
        for r in deletion
    ]
    [section] = sections(ReportInput([*deletion, *noisier], report.store, report.registry))
    first, second = [b.title for b in section.blocks]
    assert "noise=0.01" in first and "noise=0.1" in second


def test_a_figure_appears_only_with_its_runs(report):
    [section] = sections(ReportInput(report.runs_of("soco.soundness"), report.store, report.registry))
    assert [b.title for b in section.blocks] == TITLES[section.title][:2]


def test_nothing_without_soco_runs(report):
    other = StoredRun("core.relevance_mass", "x", {"metric": "core.relevance_mass", "results": []})
    assert sections(ReportInput([], report.store, report.registry)) == []
    assert sections(ReportInput([other], report.store, report.registry)) == []


def test_the_section_is_registered(registry):
    assert registry.resolve("report", "soco.report").load() is sections
