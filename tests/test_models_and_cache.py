"""Weights and data on disk: cached training, resumable training, user weights, corrupt cache entries."""

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attribench_core.builtin.toy import ToyCNN, make_toy
from attribench_core.cache import cached_arrays, home
from attribench_core.cli import cli
from attribench_core.errors import ModelError
from attribench_core.model import Recipe
from attribench_core.progress import no_progress
from attribench_core.runner import Resources, RunRequest
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


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_trained_weights_do_not_depend_on_the_callers_thread_count(threads, monkeypatch, tmp_path):
    """CPU training runs with a fixed thread count: with 1 and 2 threads the same seed trained different
    core.toy_cnn weights before, since reductions split by thread count round differently."""
    reference = _obtain().weights_hash
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        trained = _obtain()
        assert torch.get_num_threads() == threads  # the caller's count is restored
    finally:
        torch.set_num_threads(before)
    assert trained.source == "trained"
    assert trained.weights_hash == reference


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


def test_training_reads_batches_and_gives_the_weights_of_the_whole_array_loop():
    """fit_classifier asks the dataset for each batch; on core.toy its weights are bit for bit those of the
    loop it replaced, which copied the whole training set into one tensor and indexed it."""
    data = make_toy("train", seed=0, size=200)
    recipe = Recipe(epochs=2, batch_size=64, lr=3e-3)
    torch.manual_seed(0)
    streamed = ToyCNN().build(4, (3, 32, 32))
    reference = copy.deepcopy(streamed)
    fit_classifier(streamed, data, recipe, seed=1)

    generator = torch.Generator().manual_seed(1)
    whole = data.batch(np.arange(len(data)))
    optimizer = torch.optim.Adam(reference.parameters(), lr=recipe.lr)
    reference.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), recipe.batch_size):
            pick = order[start : start + recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(reference(whole.images[pick]), whole.labels[pick]).backward()
            optimizer.step()
    assert weights_hash(streamed) == weights_hash(reference)


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


class _Scripted(ToyCNN):
    """ToyCNN read from a TorchScript file instead of a state dict."""

    def from_file(self, path, num_classes, image_shape):
        if path.suffix != ".ts":
            raise ModelError(f"'{path}' is not a .ts file.")
        return torch.jit.load(str(path), map_location="cpu")


class _Scaled(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_a_model_may_read_its_own_file_format_and_its_errors_are_shown_as_is(tmp_path):
    def obtain(path):
        return obtain_model(
            _Scripted(),
            "t.scripted",
            lambda split: make_toy(split, seed=0),
            data_key={},
            seed=0,
            weights_file=path,
        )

    scripted = torch.jit.script(ToyCNN().build(4, (3, 32, 32)))
    scripted.save(str(tmp_path / "mine.ts"))
    loaded = obtain(tmp_path / "mine.ts")
    images = make_toy("test", seed=0, size=8).batch(range(8)).images
    assert loaded.source == "file" and torch.equal(loaded.module(images), scripted(images))
    assert loaded.module.attribench_info.weights_hash == loaded.weights_hash
    torch.save(scripted.state_dict(), tmp_path / "mine.pt")
    with pytest.raises(ModelError, match=r"^'.*mine\.pt' is not a \.ts file\.$"):
        obtain(tmp_path / "mine.pt")
    # a TorchScript module's hash covers its plain attributes too, and is the same for every load of a file
    torch.manual_seed(0)
    one, two = _Scaled(1.0), _Scaled(1.0)
    two.load_state_dict(one.state_dict())
    two.scale = 2.0
    assert weights_hash(one) == weights_hash(two)
    assert weights_hash(torch.jit.script(one)) != weights_hash(torch.jit.script(two))
    again = torch.jit.load(str(tmp_path / "mine.ts"))
    assert weights_hash(again) == loaded.weights_hash


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


def test_a_dataset_keys_the_same_entries_whether_its_defaults_are_spelt_out_or_not(test_plugins):
    request = RunRequest("core.relevance_mass")
    implicit = Resources(test_plugins, request, no_progress, {})
    explicit = Resources(test_plugins, request, no_progress, {"size": None})
    assert implicit.options("core.toy") == explicit.options("core.toy") == {"size": None}
    assert implicit.dataset_key("core.toy") == explicit.dataset_key("core.toy")


def test_parallel_builders_of_a_cache_entry_build_it_once():
    """flock locks open files, so threads with their own handles stand in for processes here."""
    builds = []

    def build() -> dict[str, np.ndarray]:
        builds.append(1)
        time.sleep(0.3)
        return {"x": np.arange(3)}

    with ThreadPoolExecutor(3) as pool:
        values = list(pool.map(lambda _: cached_arrays("datasets/locked.npz", build)["x"].tolist(), range(3)))
    assert values == [[0, 1, 2]] * 3
    assert len(builds) == 1
