"""Every metric of the plugin, whatever it measures: it runs on the researcher's own model and image folder
(issue 8), and through an executor whose batches finish in any order it gives the results of `core.local`."""

from __future__ import annotations

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
from photo_folder import write_photos

from attribench_core import UsageProblem
from attribench_core.runner import RunRequest, run
from attribench_core.testing import ShuffledExecutor, plugin_registry

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
CHECKS = sorted(
    e.qualified for e in plugin_registry(PLUGINS).entries("metric") if e.qualified.startswith("checks.")
)
NEEDS_TRAINING = {"checks.data_randomisation"}  # trains the model's twin: refused for a network you built
EXPLAINERS = ["gradient", "input_x_gradient", "random"]
MODEL_FILE = """\
import torch

from attribench_core import reference_models


def build(num_classes):
    torch.manual_seed(0)
    return reference_models.resnet18(num_classes, width=8)
"""


def _finite_or_skipped(outcome) -> None:
    for label, result in outcome.results.items():
        assert np.isfinite(result.value) or result.n == 0, (label, result)
        assert result.n + sum(result.skipped.values()) > 0, label


@pytest.mark.parametrize("metric", CHECKS)
def test_on_your_resnet_and_your_image_folder(metric, tmp_path):
    """Every check on a user's ResNet-18; the one that must train the model's twin refuses, saying why."""
    write_photos(tmp_path / "photos")
    (tmp_path / "my.py").write_text(MODEL_FILE)
    request = RunRequest(
        metric,
        EXPLAINERS,
        num_imgs=3,
        batch_size=2,
        store=tmp_path / "store.h5",
        images=tmp_path / "photos",
        size=32,
        model=f"{tmp_path / 'my.py'}:build",
        normalize="imagenet",
    )
    if metric in NEEDS_TRAINING:
        with pytest.raises(UsageProblem, match="never trained here, so its twin on permuted labels"):
            run(plugin_registry(PLUGINS), request)
        return
    outcome = run(plugin_registry(PLUGINS), request)
    assert set(outcome.results) >= {f"methods.{e}" for e in EXPLAINERS}
    assert outcome.provenance["model"] == "file:my.build"
    _finite_or_skipped(outcome)


@pytest.mark.parametrize("metric", CHECKS)
def test_an_executor_finishing_in_any_order_gives_the_results_of_core_local(metric, tmp_path):
    registry = plugin_registry({**PLUGINS, "x": ShuffledExecutor.plugin()})

    def results(executor: str, store: str) -> list[dict]:
        request = RunRequest(
            metric,
            EXPLAINERS,
            num_imgs=6,
            batch_size=2,
            store=tmp_path / store,
            executor=executor,
            executor_options={"seed": 3} if executor == "x.shuffled" else {},
        )
        outcome = run(registry, request)
        _finite_or_skipped(outcome)
        return outcome.to_json()["results"]

    assert results("x.shuffled", "shuffled.h5") == results("core.local", "local.h5")
