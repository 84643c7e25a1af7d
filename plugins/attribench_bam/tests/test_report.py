"""BAM's report section from hand-made runs in the `--json` format of real ones (checked against tiny runs:
values, a bootstrap CI whose bounds are NaN when no image counted, TCAV's range over random sets)."""

from __future__ import annotations

import pytest
from attribench_bam.report import rmcs_lines, sections

from attribench_core.report.content import Figure, ReportInput, StoredRun
from attribench_core.store import AttributionStore
from attribench_core.testing import plugin_registry

PNG = b"\x89PNG\r\n\x1a\n"
DATA = {"data_root": "", "size": 32, "n": 4, "val": 2}


def result(label: str, value: float | None, low: float, high: float, **values: float | None) -> dict:
    return {
        "explainer": label,
        "value": value,
        "values": values,
        "uncertainty": {"kind": "bootstrap_ci95", "low": low, "high": high},
        "n": 8,
        "n_skipped": 2,
        "skipped_reasons": {"misclassified by a model of the comparison": 2},
    }


def check(model: str, digest: str, accuracy: float | None = None, without: float | None = None) -> dict:
    """A model's entry of `payload["models"]` as `Resources.model_checks` saves BAM's check (unchecked
    without `accuracy`: weights given with --weights)."""
    entry = {"model": model, "source": "cache", "weights_hash": digest * 64}
    if accuracy is not None:
        table = [{"images": "val composites", "accuracy": accuracy}]
        entry.update(accuracy=accuracy, passed=True, table=table)
        if without is not None:
            entry["accuracy_without_object"] = without
            table.append({"images": "same scenes, object removed", "accuracy": without})
    return entry


def run(metric: str, run_id: str, results: list[dict], models: list[dict], **options: object) -> StoredRun:
    payload = {
        "metric": metric,
        "options": {**DATA, **options},
        "results": results,
        "provenance": {"seed": 0},
        "models": models,
    }
    return StoredRun(metric, run_id, payload)


def report_of(runs: list[StoredRun], tmp_path) -> ReportInput:
    return ReportInput(runs, AttributionStore(tmp_path / "none.h5"), plugin_registry())


RMCS = {f"rmcs_{i}": 0.5 - 0.05 * i for i in range(1, 10)}
RELIANCE = {f"dog_reliance_{k}": 0.1 * (10 - k) for k in range(1, 11)}
OBJ_SCENE = [check("bam.obj", "3", 0.95, 0.12), check("bam.scene", "4", 0.9, 0.89)]
RUNS = [
    run(  # an older configuration, not shown (nor its models)
        "bam.mcs", "r1", [result("methods.ig", 0.9, 0.8, 1.0)], [check("bam.obj", "1", 0.9, 0.1)]
    ),
    run(
        "bam.mcs",
        "r2",
        [result("methods.ig", 0.1, 0.05, 0.2), result("methods.random", None, *[float("nan")] * 2)],
        [check("bam.obj", "3", 0.5, 0.5), check("bam.scene", "4", 0.5, 0.5)],  # replaced by r3's
        size=64,
    ),
    run("bam.mcs", "r3", [result("methods.gradcam", 0.4, 0.3, 0.5)], OBJ_SCENE, size=64),
    run(
        "bam.iir",
        "r4",
        [result("methods.ig", 0.5, 0.25, 0.75)],
        [check("bam.scene_only", "5", 0.8)],
        threshold=0.1,
    ),
    run(
        "bam.rmcs",
        "r5",
        [
            result(
                "methods.ig",
                0.25,
                0.2,
                0.3,
                rmcs=0.25,
                decreasing=1.0,
                positive_share=1.0,
                **RMCS,
                **RELIANCE,
            ),
            result("methods.random", None, *[float("nan")] * 2, decreasing=0.0, **dict.fromkeys(RMCS)),
        ],
        [check("bam.scene1", "6")],
    ),
    run(
        "bam.tcav",
        "r6",
        [
            {
                "explainer": label,
                "value": 0.3,
                "values": {
                    "tcav": 0.3,
                    "tcav_obj": 0.8,
                    "tcav_scene": 0.5,
                    "tcav_null_obj": 0.45,
                    "tcav_null_scene": 0.55,
                    "p_obj": 0.001,
                    "p_scene": 0.6,
                    "cav_accuracy_obj": 0.9,
                    "cav_accuracy_scene": 0.6,
                },
                "uncertainty": {"kind": "range_over_random_sets", "low": 0.2, "high": 0.4},
                "n": 100,
                "n_skipped": 0,
                "skipped_reasons": {},
            }
            for label in ("methods.edge", "methods.random")
        ],
        OBJ_SCENE,
        layer="features.relu4",
    ),
]


def test_the_section_shows_each_metric_of_the_newest_configuration(tmp_path):
    (section,) = sections(report_of(RUNS, tmp_path))
    assert section.title == "BAM: relative feature importance"
    blocks = {b.title: b for b in section.blocks}
    assert blocks["Model checks"].rows == [
        ["bam.obj", "3" * 10, 0.95, 0.12, "yes"],
        ["bam.scene", "4" * 10, 0.9, 0.89, "yes"],
        ["bam.scene1", "6" * 10, None, None, "not checked"],
        ["bam.scene_only", "5" * 10, 0.8, None, "yes"],
    ]
    assert blocks["Scores per method"].rows == [
        ["bam.mcs", "methods.ig", 0.1, 0.05, 0.2, 8, 2],
        ["bam.mcs", "methods.random", None, None, None, 8, 2],
        ["bam.mcs", "methods.gradcam", 0.4, 0.3, 0.5, 8, 2],
        ["bam.iir", "methods.ig", 0.5, 0.25, 0.75, 8, 2],
    ]
    assert blocks["RMCS per method"].rows == [
        ["methods.ig", 0.25, 0.2, 0.3, "yes", 1.0],
        ["methods.random", None, None, None, "no", None],
    ]
    assert blocks["Reliance of the scene_k models on the dog"].rows == [
        [k, pytest.approx(0.1 * (10 - k))] for k in range(1, 11)
    ]
    assert blocks["TCAV score of the dog concept"].rows == [
        ["obj (dog logit)", 0.8, 0.45, 0.001, 0.9, None, None],
        ["scene (bedroom logit)", 0.5, 0.55, 0.6, 0.6, None, None],
        ["obj − scene", 0.3, None, None, None, 0.2, 0.4],
    ]
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert [f.title for f in figures] == [
        "bam.mcs per method",
        "bam.iir per method",
        "RMCS over i",
        "TCAV scores",
    ]
    assert all(f.png.startswith(PNG) and len(f.png) > 1000 for f in figures)


def test_rmcs_curves_leave_out_methods_without_a_contrast():
    lines = rmcs_lines(RUNS[4].results)
    assert list(lines) == ["methods.ig"]
    x, y = lines["methods.ig"]
    assert x == [float(i) for i in range(1, 10)] and y == pytest.approx(
        [0.5 - 0.05 * i for i in range(1, 10)]
    )


def test_a_metric_without_runs_leaves_its_blocks_out(tmp_path):
    (section,) = sections(report_of([RUNS[5]], tmp_path))
    assert [b.title for b in section.blocks] == [
        "Model checks",
        "TCAV score of the dog concept",
        "TCAV scores",
    ]


def test_nothing_to_show_without_bam_runs(tmp_path):
    other = StoredRun("smerf.afl", "r1", {"metric": "smerf.afl", "options": {}, "results": [], "models": []})
    assert sections(report_of([other], tmp_path)) == []
