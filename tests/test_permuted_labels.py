"""A model's random-label twin (`PermutedLabels`): its labels are a permutation drawn from the run seed, it
is trained once by the model's recipe and cached under its own key (the real model's key unchanged), its
check is recorded, workers load the same twin, and models attribench does not train are refused."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any, ClassVar

import abfixture.plugin
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attribench_core import (
    AttributionRequest,
    Metric,
    Model,
    PermutedLabels,
    Recipe,
    Result,
    UsageProblem,
    home,
    hookimpl,
)
from attribench_core.builtin.toy import make_toy
from attribench_core.cli import cli
from attribench_core.identity import short_hash
from attribench_core.keys import training_data, weights_key
from attribench_core.permuted_labels import PermutedLabelsDataset, chance_accuracy, twin_check
from attribench_core.runner import (
    RunRequest,
    attribute_batch,
    execute,
    plan,
    prepare,
    run,
    worker_context,
)
from attribench_core.testing import ShuffledExecutor, plugin_registry, tiny_model, using_plugins
from attribench_core.training import TRAINING_THREADS

SIZE = 48
TWIN = PermutedLabels()


class SmallToy(Model):
    """`tiny_model` trained for two epochs on 48 toy images (no accuracy gate): quick to train twice."""

    dataset = "core.toy"
    dataset_options: ClassVar[dict[str, Any]] = {"size": SIZE}
    recipe = Recipe(epochs=2, batch_size=16, lr=1e-2)

    def build(self, num_classes, image_shape):
        return tiny_model(num_classes, image_shape[0])


class TwinMaps(Metric):
    """Asks for the maps of the model and of its twin; its value is the mean of the twin's maps."""

    higher_is_better = False
    category = "randomisation"
    dataset = "core.toy"
    model = "t2.small"

    def requests(self, ctx):
        index = tuple(map(int, ctx.index))
        plain = AttributionRequest(ctx.dataset_name, ctx.model_name, index)
        return [plain, replace(plain, training=TWIN)]

    def compute(self, ctx, explainer):
        maps = [s.attribution for s in ctx.stored_batches(explainer, training=TWIN)]
        return Result(float(np.mean(np.concatenate(maps))), n=len(ctx.index))


class TwinPlugin:
    @hookimpl
    def register_models(self, register):
        register("small", SmallToy)

    @hookimpl
    def register_metrics(self, register):
        register("twins", TwinMaps)


PLUGINS = {"t": abfixture.plugin, "t2": TwinPlugin(), "x": ShuffledExecutor.plugin()}


@pytest.fixture
def registry():
    return plugin_registry(PLUGINS)


def _request(tmp_path, **changes):
    request = RunRequest("t2.twins", ["t.grad", "t.noise"], num_imgs=6, batch_size=4)
    return replace(request, **{"store": tmp_path / "store.h5", **changes})


def test_the_labels_are_a_permutation_of_the_training_labels_drawn_from_the_seed():
    base = make_toy("train", size=SIZE)
    order = TWIN.permutation(SIZE, seed=0)
    assert (order == TWIN.permutation(SIZE, seed=0)).all() and (order != TWIN.permutation(SIZE, 1)).any()
    permuted = PermutedLabelsDataset(base, order)
    assert (permuted.labels == base.labels[order]).all()
    assert sorted(permuted.labels) == sorted(base.labels) and (permuted.labels != base.labels).any()
    batch = permuted.batch([3, 1])
    assert batch.labels.tolist() == [base.labels[order[3]], base.labels[order[1]]]
    assert torch.equal(batch.images, base.batch([3, 1]).images)
    assert permuted[5].label == base.labels[order[5]] and permuted.num_classes == base.num_classes
    with pytest.raises(ValueError, match="every index"):
        PermutedLabelsDataset(base, np.zeros(SIZE, dtype=np.int64))


def test_epochs_replace_the_recipe_s_and_enter_the_identity():
    recipe = Recipe(epochs=4, min_accuracy=0.9, max_attempts=2)
    assert TWIN.recipe(recipe) == replace(recipe, min_accuracy=0.0, max_attempts=1)
    assert PermutedLabels(epochs=30).recipe(recipe).epochs == 30
    assert TWIN.identity() != PermutedLabels(epochs=30).identity() and PermutedLabels() == TWIN
    with pytest.raises(ValueError, match="at least 1"):
        PermutedLabels(epochs=0)


def test_chance_is_the_accuracy_of_predictions_independent_of_the_labels():
    # P(pred) = (1/2, 1/2), P(label) = (1/4, 3/4): 1/2 · 1/4 + 1/2 · 3/4 = 1/2
    assert chance_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == 0.5
    assert chance_accuracy(np.array([2, 2]), np.array([0, 1]), 3) == 0.0


class Constant(torch.nn.Module):
    """Predicts class 0 for every image."""

    def forward(self, x):
        return torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(len(x), 4)


def test_the_check_of_a_twin_that_predicts_one_class_is_at_chance_but_does_not_fit():
    train, test = make_toy("train", size=SIZE), make_toy("test", size=SIZE)
    permuted = PermutedLabelsDataset(train, TWIN.permutation(SIZE, 0))
    check = twin_check(Constant(), permuted, test)
    share = float((test.labels == 0).mean())
    assert check.summary == {
        "train_accuracy": float((permuted.labels == 0).mean()),
        "test_accuracy": share,
        "chance_accuracy": share,  # P(pred = 0) = 1
    }
    assert not check.passed and "gate 0.90" in check.message


def test_the_twin_is_trained_once_under_its_own_key_and_the_real_key_is_unchanged(
    registry, tmp_path, monkeypatch
):
    first = prepare(registry, _request(tmp_path))
    real, twin = first.resources.model("t2.small"), first.resources.model("t2.small", TWIN)
    assert twin.name == "t2.small:permuted_labels" and twin.weights_hash != real.weights_hash
    assert first.load_model("t2.small", TWIN) is twin.module
    data = training_data("core.toy", first.resources.options("core.toy"))
    module = SmallToy().build(4, (3, 32, 32))
    # the real model's key is the one an ordinary model has always had
    ordinary = {
        "model": "t2.small",
        "architecture": repr(module),
        "recipe": dataclasses.asdict(SmallToy.recipe),
        "data": data,
        "seed": 0,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "training_threads": TRAINING_THREADS,
    }
    real_key = weights_key("t2.small", module, SmallToy.recipe, data, 0)
    assert real_key == short_hash(ordinary, 16)
    assert (home() / "models" / "t2.small" / f"{real_key}.pt").is_file()
    twin_key = weights_key(twin.name, module, TWIN.recipe(SmallToy.recipe), data, 0, TWIN.identity())
    assert twin_key != real_key and (home() / "models" / twin.name / f"{twin_key}.pt").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("attribench_core.weights._train", no_training)
    again = prepare(registry, _request(tmp_path))
    reused = again.resources.model("t2.small", TWIN)
    assert reused.source == "cache" and reused.weights_hash == twin.weights_hash
    assert reused.verification == twin.verification


def test_the_twin_s_maps_are_its_own_and_its_check_is_recorded(registry, tmp_path):
    outcome = run(registry, _request(tmp_path))
    assert outcome.computed == 24  # 6 images × 2 explainers × (model, twin)
    checks = {c["model"]: c for c in outcome.models}
    twin = checks["t2.small:permuted_labels"]
    assert set(twin) >= {"train_accuracy", "test_accuracy", "chance_accuracy", "passed"}
    assert outcome.verification["model"] == "t2.small"
    ctx = prepare(registry, _request(tmp_path))
    model, images = ctx.load_model("t2.small", TWIN), ctx.dataset.batch(ctx.index).images
    stored = list(ctx.stored_batches("t.grad", training=TWIN))
    target = np.concatenate([s.target for s in stored])
    with torch.no_grad():
        assert (target == model(images).argmax(1).numpy()).all()  # the twin explains its own prediction
    x = images.clone().requires_grad_(True)
    model(x).gather(1, torch.as_tensor(target)[:, None]).sum().backward()
    np.testing.assert_allclose(np.concatenate([s.attribution for s in stored]), x.grad.numpy(), atol=1e-6)
    plain = np.concatenate([s.attribution for s in ctx.stored_batches("t.grad")])
    assert not np.allclose(plain, x.grad.numpy())
    key = ctx.group_key(ctx.dataset_name, "t2.small", ctx.explainers["t.grad"], "prediction", training=TWIN)
    with ctx.store.reader(key) as reader:
        assert reader.read(ctx.index[:1]).index.tolist() == [ctx.index[0]]
    provenance = [t.provenance for t in plan(prepare(registry, _request(tmp_path, store=tmp_path / "b.h5")))]
    assert {p["model"] for p in provenance} == {"t2.small"}
    assert [p.get("training") for p in provenance].count(TWIN.identity()) == 2


def test_the_run_prints_the_twin_s_check(tmp_path):
    with using_plugins(PLUGINS):
        result = CliRunner().invoke(
            cli, ["run", "t2.twins", "-e", "t.grad", "--num-imgs", "4", "--store", str(tmp_path / "s.h5")]
        )
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert "t2.small:permuted_labels (trained; train_accuracy" in line or "(cache; train_accuracy" in line
    assert "chance_accuracy" in line and "check failed)" in line  # 2 epochs do not memorise 48 labels


def test_workers_load_the_same_twin_and_compute_the_same_maps(registry, tmp_path):
    local = prepare(registry, _request(tmp_path, store=tmp_path / "a.h5"))
    tasks = plan(local)
    execute(local, tasks)
    with using_plugins(PLUGINS):
        worker = worker_context(_request(tmp_path, store=tmp_path / "a.h5", executor="x.shuffled"))
    assert worker.resources.model("t2.small", TWIN).source == "cache"  # a worker never trains
    for task in (t for t in tasks if t.training == TWIN and t.explainer.label == "t.grad"):
        for index in task.batches:
            computed = attribute_batch(worker, task.work(index)).attribution
            stored = next(local.stored_batches("t.grad", index=index, training=TWIN)).attribution
            np.testing.assert_array_equal(computed, stored)
    shuffled = prepare(registry, _request(tmp_path, store=tmp_path / "b.h5", batch_size=3))
    shuffled.executor = ShuffledExecutor(seed=3)
    execute(shuffled, plan(shuffled))
    a = np.concatenate([s.attribution for s in local.stored_batches("t.grad", training=TWIN)])
    b = np.concatenate([s.attribution for s in shuffled.stored_batches("t.grad", training=TWIN)])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_twin_of_a_model_attribench_does_not_train_is_refused(registry, tmp_path):
    (tmp_path / "net.py").write_text(
        "from attribench_core.testing import tiny_model\n\ndef build(num_classes):\n"
        "    return tiny_model(num_classes)\n"
    )
    weights = tmp_path / "w.pt"
    torch.save(tiny_model(4).state_dict(), weights)
    cases = [
        ({"model": "net.py:build"}, "file:net.build brings its own weights and is never trained here"),
        ({"weights": weights}, "t2.small takes its weights from --weights"),
    ]
    for changes, message in cases:
        with pytest.raises(UsageProblem, match=message):
            prepare(registry, _request(tmp_path, **changes))
