"""SoCo's metrics end to end through the runner, on the core's toy pair (trains in about a second): curves
of the paper's lengths, soundness in [0,1], and `soco.validate`'s extra linear rows."""

from __future__ import annotations

import attribench_methods.plugin
import attribench_soco.plugin
import numpy as np
import pytest

from attribench_core.runner import RunRequest, run
from attribench_core.testing import plugin_registry

LENGTHS = {
    "soco.soundness": {"soundness": 96, "accuracy": 96, "soundness_vs_accuracy": 96},
    "soco.completeness": {"completeness": 9, "removed": 9},
    "soco.road": {"morf": 9, "lerf": 9},
    "soco.deletion": {"deletion": 206},  # RISE's 224 steps on 32²: ⌈1024/5⌉ = 205 steps of 5 pixels
    "soco.insertion": {"insertion": 206},
    "soco.deletion_accuracy": {"deletion_accuracy": 9},
    "soco.insertion_accuracy": {"insertion_accuracy": 9},
}


@pytest.fixture(scope="module")
def registry():
    return plugin_registry({"methods": attribench_methods.plugin, "soco": attribench_soco.plugin})


@pytest.mark.parametrize("metric", list(LENGTHS))
def test_every_metric_runs_on_any_pair_with_curves_of_the_spec_length(registry, metric, tmp_path):
    request = RunRequest(
        metric,
        explainers=["gradient", "random"],
        num_imgs=6,
        dataset="core.toy",
        model="core.toy_cnn",
        store=tmp_path / "s.h5",
    )
    outcome = run(registry, request).to_json()
    for row in outcome["results"]:
        curves = {k: len(v["y"]) for k, v in row["values"].items() if isinstance(v, dict)}
        assert curves == LENGTHS[metric]
        assert row["n"] == 6 and np.isfinite(row["value"])
        if metric == "soco.soundness":
            assert 0 <= row["value"] <= 1
            assert all(0 <= y <= 1 for y in row["values"]["soundness"]["y"] if y is not None)


def test_sweeps_through_an_executor_finishing_in_any_order_give_the_results_of_core_local(tmp_path):
    from attribench_core.testing import ShuffledExecutor

    registry = plugin_registry(
        {"methods": attribench_methods.plugin, "soco": attribench_soco.plugin, "x": ShuffledExecutor.plugin()}
    )

    def outcome(executor: str, store: str) -> dict:
        request = RunRequest(
            "soco.road",
            explainers=["smoothgrad:samples=4"],
            num_imgs=10,
            batch_size=3,
            dataset="core.toy",
            model="core.toy_cnn",
            store=tmp_path / store,
            executor=executor,
            executor_options={"seed": 2} if executor == "x.shuffled" else {},
        )
        return run(registry, request).to_json()["results"]

    assert outcome("x.shuffled", "shuffled.h5") == outcome("core.local", "local.h5")
