import json
from types import SimpleNamespace

import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
from attribench_checks.metrics import Complexity, Sparseness
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.testing import plugin_registry, using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}


class StoredMaps:
    """The part of a metric context the complexity metrics read: one batch of stored maps."""

    def __init__(self, attribution: np.ndarray, nonfinite: np.ndarray):
        self.batch = SimpleNamespace(
            index=np.arange(len(attribution)), attribution=attribution, nonfinite=nonfinite
        )

    def stored_batches(self, explainer):
        yield self.batch

    def rng(self, name):
        return np.random.default_rng(0)


def test_the_plugin_registers_its_metrics_as_complexity():
    registry = plugin_registry({"checks": attribench_checks.plugin})
    metrics = {e.name: e for e in registry.entries("metric") if e.namespace == "checks"}
    complexity = sorted(name for name, e in metrics.items() if e.meta["category"] == "complexity")
    assert complexity == ["complexity", "sparseness"]
    assert Sparseness.higher_is_better and not Complexity.higher_is_better


@pytest.mark.parametrize("metric", [Sparseness, Complexity])
def test_all_zero_and_nonfinite_maps_are_skipped_with_their_reason(metric):
    maps = np.ones((4, 1, 2, 2))
    maps[1] = 0.0
    maps[2, 0, 0, 0] = np.nan
    ctx = StoredMaps(maps, nonfinite=np.array([False, False, True, False]))
    result = metric().compute(ctx, "e")
    assert result.skipped == {"all-zero map": 1, "non-finite attribution": 1}
    np.testing.assert_array_equal(result.index, [0, 3])
    assert result.value == pytest.approx(0.0 if metric is Sparseness else np.log(4))


def test_random_maps_are_as_sparse_as_uniform_noise_and_gradients_sparser(tmp_path):
    args = ["run", "checks.sparseness", "-e", "random", "-e", "gradient", "--num-imgs", "8", "--json"]
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(
            cli,
            [*args, "--store", str(tmp_path / "attribench.h5")],
            env={"ATTRIBENCH_HOME": str(tmp_path / "home")},
        )
    assert result.exit_code == 0, result.output
    rows = {row["explainer"]: row for row in json.loads(result.stdout)["results"]}
    assert {row["n"] for row in rows.values()} == {8}
    # U[0, 1) per pixel: Gini 1/3 (test_functional), 1024 pixels a map
    assert rows["methods.random"]["value"] == pytest.approx(1 / 3, abs=0.01)
    assert rows["methods.gradient"]["value"] > rows["methods.random"]["value"] + 0.2
