"""Weights and data on disk: cached training, resumable training, user weights, corrupt cache entries."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attribench_core.builtin.toy import ToyCNN, make_toy
from attribench_core.cache import cached_arrays, home
from attribench_core.cli import cli
from attribench_core.model import Recipe
from attribench_core.training import fit_classifier
from attribench_core.weights import obtain_model, weights_hash


def _obtain(**kwargs):
    return obtain_model(
        ToyCNN(),
        "core.toy_cnn",
        lambda split: make_toy(split, seed=0),
        data_key={"dataset": "core.toy"},
        seed=0,
        **kwargs,
    )


def test_trained_weights_are_cached_and_verified():
    first = _obtain()
    again = _obtain()
    assert again.source == "cache"
    assert again.weights_hash == first.weights_hash
    assert again.verification.passed and again.verification.summary["accuracy"] >= 0.9
    assert again.module.attribench_info.cam_layer == "features.3"


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path):
    data = make_toy("train", seed=0, size=256)
    recipe = Recipe(epochs=3, batch_size=64, lr=3e-3)

    def fresh():
        torch.manual_seed(0)
        return ToyCNN().build(4, (3, 32, 32))

    straight = fresh()
    fit_classifier(straight, data, recipe, seed=1)
    resumed = fresh()
    checkpoint = tmp_path / "run.ckpt"
    fit_classifier(resumed, data, Recipe(epochs=1, batch_size=64, lr=3e-3), seed=1, checkpoint=checkpoint)
    fit_classifier(fresh(), data, recipe, seed=1, checkpoint=checkpoint)  # picks up after epoch 1
    final = fresh()
    fit_classifier(final, data, recipe, seed=1, checkpoint=checkpoint)  # checkpoint now says epoch 3: no-op
    assert weights_hash(final) == weights_hash(straight)


def test_user_weights_file_is_used_and_bad_files_are_one_line_errors(tmp_path):
    trained = _obtain()
    path = tmp_path / "mine.pt"
    torch.save(trained.module.state_dict(), path)
    loaded = _obtain(weights_file=path)
    assert loaded.source == "file" and loaded.weights_hash == trained.weights_hash
    torch.save({"nope": torch.zeros(1)}, tmp_path / "wrong.pt")
    for name, message in (("missing.pt", "does not exist"), ("wrong.pt", "do not fit model core.toy_cnn")):
        result = CliRunner().invoke(
            cli, ["run", "core.relevance_mass", "--model", "core.toy_cnn", "--weights", str(tmp_path / name)]
        )
        assert result.exit_code == 1
        assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_corrupt_cache_entries_are_rebuilt():
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(3)}

    cached_arrays("test/corrupt.npz", build)
    path = home() / "test" / "corrupt.npz"
    whole = path.read_bytes()
    for damaged in (b"garbage", whole[: len(whole) // 2]):  # not an npz at all; a truncated zip
        path.write_bytes(damaged)
        with pytest.warns(UserWarning, match="unreadable"):
            again = cached_arrays("test/corrupt.npz", build)
        assert again["x"].tolist() == [0, 1, 2]
    assert len(calls) == 3


def test_retrain_flag_trains_again(test_plugins):
    args = ["run", "core.relevance_mass", "-e", "t.grad", "--num-imgs", "4", "--json"]
    CliRunner().invoke(cli, args)
    result = CliRunner().invoke(cli, [*args[:-1], "--retrain"])
    assert "model core.toy_cnn (trained" in result.output
    assert json.loads(CliRunner().invoke(cli, args).stdout)["results"][0]["n"] == 4
