"""Every BAM metric end to end through the CLI on a tiny bam-synth (32 px, 4 images per class), with the
models' gates lowered and one epoch each: a handful of images cannot train them."""

from __future__ import annotations

import json

import pytest
from attribench_bam import models
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.model import Recipe
from attribench_core.testing import using_plugins

pytest.importorskip("attribench_methods")

TINY = ["--size", "32", "--n", "4", "--val", "2"]


@pytest.fixture(scope="module")
def tiny_bam(tmp_path_factory):
    home = tmp_path_factory.mktemp("bam")
    patch = pytest.MonkeyPatch()
    patch.setenv("ATTRIBENCH_HOME", str(home / "home"))
    patch.chdir(home)
    patch.setattr(models, "ABOVE_CHANCE", 1.0)
    patch.setattr(models, "MAX_SCENE_DROP", 1.0)
    quick = Recipe(epochs=1, batch_size=32, min_accuracy=0.0)
    for name in ("obj", "scene", "scene_only", *models.SCENE_K_MODELS):
        patch.setattr(getattr(models, name), "recipe", quick)
    with using_plugins(entrypoints=True):
        yield
    patch.undo()


def run(metric: str, *extra: str) -> dict:
    args = ["run", metric, "-e", "edge", "-e", "random", *TINY, *extra, "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return {r["explainer"]: r for r in json.loads(result.stdout)["results"]}


@pytest.mark.parametrize(
    ("metric", "low", "high"), [("bam.mcs", -1, 1), ("bam.idr", 0, 1), ("bam.iir", 0, 1), ("bam.rmcs", -1, 1)]
)
def test_metrics_on_attributions_run_and_stay_in_range(tiny_bam, metric, low, high):
    rows = run(metric, "--num-imgs", "8")
    for row in rows.values():
        assert row["n"] + row["n_skipped"] > 0
        if row["value"] is not None:
            assert low <= row["value"] <= high
    if metric == "bam.rmcs":
        assert {f"rmcs_{i}" for i in range(1, 10)} <= set(rows["methods.edge"]["values"])
    if metric == "bam.iir":
        assert "median_patch_logit_distance" in rows["methods.edge"]["values"]


def test_tcav_is_the_same_for_every_explainer_and_in_range(tiny_bam):
    rows = run("bam.tcav", "--concept-size", "10", "--num-imgs", "2")
    edge, random = rows["methods.edge"], rows["methods.random"]
    assert edge["value"] == random["value"] and -1 <= edge["value"] <= 1
    assert 0 <= edge["values"]["tcav_obj"] <= 1 and 0 <= edge["values"]["tcav_scene"] <= 1
