import json
from dataclasses import replace

import abfixture.plugin
import attribench_checks.plugin
import attribench_methods.plugin
import numpy as np
import pytest
from attribench_checks.data_randomisation import (
    CONSTANT_MAP,
    DataRandomisation,
    map_similarities,
    skip_reasons,
)
from attribench_checks.randomisation import normalise_for_ssim
from click.testing import CliRunner
from photo_folder import write_photos

from attribench_core.cli import cli
from attribench_core.runner import RunRequest, run
from attribench_core.testing import ShuffledExecutor, plugin_registry, refused_run, using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cache for the module: the toy model and its twin train once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def cache(home, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", str(home))


def _cli(tmp_path, *args, plugins=PLUGINS):
    with using_plugins(plugins):
        return CliRunner().invoke(
            cli, ["run", "checks.data_randomisation", *args, "--store", str(tmp_path / "s.h5"), "--json"]
        )


def test_normalisation_for_ssim_clips_at_the_percentile():
    maps = np.array([[[0.0, 1.0], [2.0, 100.0]]])
    # the 50th percentile of (0, 1, 2, 100) is 1.5: (m - 0) / 1.5, clipped at 1
    np.testing.assert_allclose(normalise_for_ssim(maps, 50.0), [[[0.0, 2 / 3], [1.0, 1.0]]])
    np.testing.assert_array_equal(normalise_for_ssim(np.ones((1, 2, 2)), 50.0), np.zeros((1, 2, 2)))


def test_similarities_of_equal_opposite_and_reversed_maps():
    a = np.arange(49.0).reshape(1, 1, 7, 7) + 1
    equal = map_similarities(a, a.copy())
    assert all(values.tolist() == pytest.approx([1.0]) for values in equal.values())
    opposite = map_similarities(a, -a)  # same |a|, signed ranks reversed
    assert opposite["spearman_abs"] == pytest.approx([1.0]) and opposite["spearman"] == pytest.approx([-1.0])
    assert opposite["ssim"] == pytest.approx([1.0])
    reversed_ = map_similarities(a, a[..., ::-1, ::-1].copy())  # pixel order reversed: ranks reversed
    assert reversed_["spearman_abs"] == pytest.approx([-1.0]) and reversed_["spearman"] == pytest.approx(
        [-1.0]
    )
    # channels are summed per pixel: a two-channel map equals its channel sum
    two = np.concatenate([a, 2 * a], axis=1)
    assert map_similarities(two, 3 * a)["spearman"] == pytest.approx([1.0])


def test_pairs_that_cannot_be_compared_are_skipped_with_their_reason():
    real = np.ones((4, 1, 7, 7))
    real[1] = 0.0
    real[2, 0, 0, 0] = np.nan
    real[3] += np.arange(49.0).reshape(7, 7)
    twin = np.ones((4, 1, 7, 7)) + np.arange(49.0).reshape(7, 7)
    found = map_similarities(np.nan_to_num(real), twin)
    reasons = skip_reasons(real, np.array([False, False, True, False]), found)
    assert reasons.tolist() == [CONSTANT_MAP, "all-zero map", "non-finite attribution", ""]


def test_the_metric_is_registered_as_randomisation_and_lower_is_better():
    registry = plugin_registry({"checks": attribench_checks.plugin})
    entry = registry.resolve("metric", "checks.data_randomisation")
    assert entry.meta["category"] == "randomisation" and not DataRandomisation.higher_is_better
    assert DataRandomisation(epochs=12).training.epochs == 12 and DataRandomisation().training.epochs is None


def test_gradient_changes_with_the_random_label_model_and_edge_does_not(tmp_path):
    args = ["-e", "gradient", "-e", "edge", "-e", "random", "--num-imgs", "12"]
    result = _cli(tmp_path, *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    rows = {row["explainer"]: row for row in payload["results"]}
    assert {row["n"] for row in rows.values()} == {12}
    edge = rows["methods.edge"]["values"]  # its map does not depend on the model
    assert edge["spearman_abs"] == edge["spearman"] == edge["ssim"] == pytest.approx(1.0)
    assert rows["methods.gradient"]["value"] < 0.6
    assert abs(rows["methods.random"]["value"]) < 0.1  # independent noise for each model
    twin = next(m for m in payload["models"] if m["model"] == "core.toy_cnn:permuted_labels")
    for row in rows.values():
        values = row["values"]
        assert values["twin_train_accuracy"] == twin["train_accuracy"]
        assert values["twin_test_accuracy"] == twin["test_accuracy"]
        assert values["twin_check_passed"] == float(twin["passed"])


def test_the_shuffled_executor_gives_the_local_result(tmp_path):
    registry = plugin_registry({**PLUGINS, "x": ShuffledExecutor.plugin()})
    request = RunRequest("checks.data_randomisation", ["gradient", "random"], num_imgs=10, batch_size=4)
    local = run(registry, replace(request, store=tmp_path / "a.h5"))
    shuffled = run(registry, replace(request, store=tmp_path / "b.h5", executor="x.shuffled"))
    for label, result in local.results.items():
        assert shuffled.results[label].values == pytest.approx(result.values, abs=1e-6)


def test_the_twin_of_a_model_trained_on_the_user_s_folder_is_trained_there(tmp_path):
    root = write_photos(tmp_path / "photos")
    args = ["--images", str(root), "--size", "20", "--model", "t.folder_cnn", "-e", "gradient"]
    result = _cli(tmp_path, *args, "--num-imgs", "5", plugins={**PLUGINS, "t": abfixture.plugin})
    assert result.exit_code == 0, result.output
    models = {m["model"]: m for m in json.loads(result.stdout)["models"]}
    assert models["t.folder_cnn:permuted_labels"]["source"] == "trained"
    assert 0 <= models["t.folder_cnn:permuted_labels"]["train_accuracy"] <= 1


def test_a_user_s_own_network_is_refused_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(
        "from attribench_core.testing import tiny_model\n\ndef build(num_classes):\n"
        "    return tiny_model(num_classes)\n"
    )
    result = _cli(tmp_path, "--model", "net.py:build", "-e", "gradient")
    assert result.exit_code == 2
    assert "file:net.build brings its own weights and is never trained here" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()
    message = refused_run(PLUGINS, ["checks.data_randomisation", "--epochs", "-1"])
    assert "'epochs' must be at least 0" in message
