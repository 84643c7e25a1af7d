"""SMERF models: the original architectures, the per-bucket gate (paper Table 3), early stopping, PGD."""

from __future__ import annotations

import attribench_smerf.models as models
import attribench_smerf.plugin
import numpy as np
import pytest
import torch
from attribench_smerf.models import (
    PGD,
    SmerfModel,
    bucket_accuracy,
    gate_verification,
    holdout_split,
    model_name,
    pgd_attack,
    textbox_cnn,
    vgg_net,
)
from torch import nn

from attribench_core.dataset import ArrayDataset
from attribench_core.errors import ModelError
from attribench_core.model import last_conv_layer
from attribench_core.testing import plugin_registry
from attribench_core.weights import obtain_model


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Squares(ArrayDataset):
    """Stand-in for TextBox: label 1 iff a white 4×4 square is present; a 2×2 distractor in some images.
    Buckets 1–4 = 1 + [square] + 2·[distractor], mirroring TextBox's `setting` and `buckets` attributes."""

    num_classes = 2
    class_names = ("absent", "present")
    setting = "simple_fr"

    def __init__(self, images, labels, buckets):
        super().__init__(images, labels)
        self.buckets = np.asarray(buckets)


def squares(n: int, seed: int, side: int = 16) -> Squares:
    rng = np.random.default_rng(seed)
    label, distractor = rng.integers(0, 2, n), rng.integers(0, 2, n)
    images = np.zeros((n, 3, side, side), np.float32)
    for i in range(n):
        r, c = rng.integers(0, side - 4, 2)
        if label[i]:
            images[i, :, r : r + 4, c : c + 4] = 1
        if distractor[i]:
            r, c = (r + 8) % (side - 2), (c + 8) % (side - 2)
            images[i, :, r : r + 2, c : c + 2] = 1
    return Squares(images, label, 1 + label + 2 * distractor)


class PixelModel(nn.Module):
    """Predicts class 1 iff pixel (0, 0, 0) is positive: lets a test set the predictions by hand."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([-p, p], 1)


def hand_made(outcomes: dict[int, list[bool]]) -> Squares:
    """One image per entry; `outcomes[bucket]` says which of that bucket's predictions are right."""
    buckets = [b for b, hits in outcomes.items() for _ in hits]
    labels = np.array([i % 2 for i in range(len(buckets))])
    right = np.array([h for hits in outcomes.values() for h in hits])
    predicted = np.where(right, labels, 1 - labels)
    images = np.zeros((len(buckets), 3, 16, 16), np.float32)
    images[:, 0, 0, 0] = np.where(predicted == 1, 1.0, -1.0)
    return Squares(images, labels, buckets)


# -- architectures ------------------------------------------------------------------------------------


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def feature_sides(module: nn.Module, image_shape=(3, 64, 64)) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
        for m in module.modules()
        if isinstance(m, nn.Conv2d)
    ]
    module(torch.zeros(1, *image_shape))
    for h in hooks:
        h.remove()
    return shapes


def test_simple_cnn_matches_the_original_textbox_cnn():
    net = textbox_cnn("simple")
    assert n_params(net) == 684_122  # research notes §2.1
    assert feature_sides(net) == [(32, 31, 31), (64, 15, 15), (64, 7, 7)]
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [200, 2]
    assert net.classifier.fc1.in_features == 7 * 7 * 64


def test_complex_cnn_matches_the_original_textbox_cnn_adv():
    net = textbox_cnn("complex")
    assert n_params(net) == 674_338
    assert feature_sides(net) == [(64, 31, 31), (128, 15, 15), (256, 7, 7), (64, 3, 3)]
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [200, 200, 2]


def test_vgg_variant_is_a_small_vgg():
    net = vgg_net()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 3
    assert feature_sides(net)[-1] == (64, 16, 16)
    assert n_params(net) == 1_121_426


@pytest.mark.parametrize("setting", ["simple_fr", "complex_cr1"])
@pytest.mark.parametrize("variant", ["cnn", "pgd", "vgg"])
def test_networks_return_logits_through_separate_relus_and_name_their_cam_layer(setting, variant):
    model = SmerfModel(setting, variant)
    net = model.build(2, (3, 64, 64))
    out = net(torch.rand(5, 3, 64, 64))
    assert out.shape == (5, 2)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities
    assert not any(isinstance(m, nn.Softmax | nn.LogSoftmax) for m in net.modules())
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(relus)
    assert isinstance(net.get_submodule(model.cam_layer), nn.Conv2d)
    assert model.cam_layer == last_conv_layer(net)


def test_architecture_follows_the_setting_family():
    assert SmerfModel("simple_nr").arch == "simple"
    assert SmerfModel("complex_fr").arch == "complex"
    assert SmerfModel("complex_cr3", "pgd").arch == "complex"
    assert SmerfModel("simple_fr", "vgg").arch == "vgg"
    with pytest.raises(ValueError, match="unknown SMERF setting"):
        SmerfModel("simple_xx")
    with pytest.raises(ValueError, match="variant"):
        SmerfModel("simple_fr", "resnet")


# -- recipe and registration ----------------------------------------------------------------------------


def test_recipe_and_gates_follow_the_paper():
    simple, complex_, robust = (
        SmerfModel("simple_fr"),
        SmerfModel("complex_cr2"),
        SmerfModel("simple_nr", "pgd"),
    )
    assert (simple.recipe.lr, simple.recipe.batch_size, simple.recipe.epochs) == (1e-4, 128, 10)
    assert simple.recipe.max_attempts == 3
    assert (complex_.recipe.lr, SmerfModel("complex_fr").recipe.lr) == (1e-3, 1e-4)  # CR: see learning_rate
    assert (simple.gate, complex_.gate, robust.gate) == (0.98, 0.95, 0.95)
    assert SmerfModel("complex_fr", "pgd").gate == 0.90
    assert SmerfModel("simple_fr", gate=0.9).gate == 0.9
    assert robust.recipe.extra["pgd"]["eps"] == 8 / 255 and "pgd" not in simple.recipe.extra
    assert simple.recipe != SmerfModel("simple_fr", "vgg").recipe  # the variant enters the cache key


def test_every_registered_model_is_a_smerf_model_bound_to_its_setting_and_variant():
    registry = plugin_registry({"smerf": attribench_smerf.plugin})
    entries = registry.entries("model", plugin="smerf")
    assert len(entries) == 21 and {e.target for e in entries} == {"attribench_smerf.models:SmerfModel"}
    model = registry.resolve("model", "smerf.complex_cr4_pgd").create()
    assert (model.setting, model.variant, model.dataset) == ("complex_cr4", "pgd", "smerf.complex_cr4")
    made = {e.name: e.create() for e in entries}
    assert all(model_name(m.setting, m.variant) == name for name, m in made.items())


# -- per-bucket gate --------------------------------------------------------------------------------------


def test_bucket_table_counts_hand_made_predictions():
    data = hand_made({1: [True] * 4, 2: [True, True, True, False], 3: [True, False]})
    rows = bucket_accuracy(PixelModel(), data)
    assert rows == [
        {"bucket": 1, "n": 4, "accuracy": 1.0},
        {"bucket": 2, "n": 4, "accuracy": 0.75},
        {"bucket": 3, "n": 2, "accuracy": 0.5},
    ]
    check = gate_verification(rows, 0.7)
    assert not check.passed
    assert check.summary == {"accuracy": pytest.approx(0.8), "min_bucket_accuracy": 0.5}
    assert check.message == "bucket 3 accuracy 0.500 < gate 0.70"
    assert gate_verification(rows, 0.5).passed
    robust_rows = [{**row, "robust_accuracy": 0.5} for row in rows]
    robust = gate_verification(robust_rows, 0.5, robust_gate=0.75)
    assert not robust.passed and robust.message == "PGD accuracy 0.500 < gate 0.75"
    assert robust.summary["robust_accuracy"] == 0.5


def test_verify_names_every_bucket_below_the_gate():
    data = hand_made({4: [True] * 10, 7: [True] * 9 + [False], 9: [False, True]})
    verification = SmerfModel("complex_fr").verify(PixelModel(), data)
    assert not verification.passed
    assert verification.message == "bucket 7 accuracy 0.900 < gate 0.95; bucket 9 accuracy 0.500 < gate 0.95"
    assert [r["bucket"] for r in verification.table] == [4, 7, 9]
    assert SmerfModel("complex_fr", gate=0.5).verify(PixelModel(), data).passed


def test_the_runner_refuses_an_ungated_model_and_names_the_bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path))
    data = hand_made({1: [True] * 4, 2: [True, False]})
    model = SmerfModel("simple_fr", epochs=1, max_attempts=2)
    monkeypatch.setattr(model, "build", lambda num_classes, shape: PixelModel())
    monkeypatch.setattr(model, "fit", lambda module, train_set, **context: None)
    with pytest.raises(ModelError, match=r"after 2 attempt\(s\): bucket 2 accuracy 0.500 < gate 0.98"):
        obtain_model(model, "smerf.simple_fr", lambda split: data, data_key={}, seed=0)


# -- training and early stopping ------------------------------------------------------------------------


def test_holdout_takes_a_share_of_every_bucket():
    buckets = np.repeat([1, 2, 5], [20, 30, 3])
    train, held = holdout_split(buckets, 0.1, seed=0)
    assert np.bincount(buckets[held]).tolist()[1:] == [2, 3, 0, 0, 1]
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(buckets)


def test_validation_comes_from_the_argument_the_train_set_or_a_holdout():
    model, train, val = SmerfModel("simple_fr"), squares(40, 0), squares(10, 1)
    assert model.validation_data(train, val, seed=0).dataset is val
    train.validation = lambda: val
    chosen = model.validation_data(train, None, seed=0)
    assert chosen.dataset is val and len(chosen.train_index) == 40
    del train.validation
    chosen = model.validation_data(train, None, seed=0)
    assert chosen.dataset is train and len(chosen.index) + len(chosen.train_index) == 40


def verdict(passed: bool):
    return gate_verification([{"bucket": 1, "n": 1, "accuracy": float(passed)}], 0.5)


def test_fit_stops_at_the_first_epoch_whose_check_passes(monkeypatch):
    model, train = SmerfModel("simple_fr", epochs=10, batch_size=32), squares(64, 0)
    epochs, verdicts = [], iter([False, False, True])
    monkeypatch.setattr(models, "_train_epoch", lambda *args: epochs.append(1))
    monkeypatch.setattr(SmerfModel, "check", lambda self, *args, **kwargs: verdict(next(verdicts)))
    progress = []
    net = model.build(2, (3, 16, 16))
    model.fit(net, train, seed=0, validation=train, progress=lambda description, total: progress.append)
    assert len(epochs) == 3
    assert sum(progress) == 10 * 2  # the bar completes although training stopped early


def test_training_reaches_the_gate_and_stops_early(monkeypatch):
    model = SmerfModel("simple_fr", gate=0.95, epochs=30, lr=3e-3, batch_size=16)
    train, val = squares(160, 0), squares(64, 1)
    epochs, train_epoch = [], models._train_epoch
    monkeypatch.setattr(models, "_train_epoch", lambda *args: (epochs.append(1), train_epoch(*args)))
    torch.manual_seed(0)
    net = model.build(2, (3, 16, 16))
    model.fit(net, train, seed=0, validation=val)
    assert len(epochs) < 30
    assert model.verify(net, val).passed


def test_an_interrupted_fit_resumes_to_the_same_weights(tmp_path):
    model = SmerfModel("simple_fr", gate=1.01, epochs=3, lr=1e-3, batch_size=32)  # the gate never holds
    train, val = squares(64, 0), squares(16, 1)

    def fresh():
        torch.manual_seed(0)
        return model.build(2, (3, 16, 16))

    straight = fresh()
    model.fit(straight, train, seed=5, validation=val)
    checkpoint, calls = tmp_path / "fit.ckpt", []

    def crash_on_second_check(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return verdict(False)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SmerfModel, "check", crash_on_second_check)
        with pytest.raises(KeyboardInterrupt):
            model.fit(fresh(), train, seed=5, validation=val, checkpoint=checkpoint)
    resumed = fresh()
    model.fit(resumed, train, seed=5, validation=val, checkpoint=checkpoint)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# -- PGD --------------------------------------------------------------------------------------------------


def linear_model(d: int = 12) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 2))


def test_pgd_step_on_a_linear_model_follows_the_sign_of_the_weight_difference():
    net = linear_model()
    w = net[1].weight.detach()
    x = torch.full((2, 3, 2, 2), 0.5)
    y = torch.tensor([0, 1])
    x_adv = pgd_attack(net, x, y, eps=0.1, step=0.1, steps=3, random_start=False)
    # d CE(y) / dx = (1 - p_y)(w_other - w_y): each step moves along its sign, and the ball stops it at ε
    expected = torch.stack([(w[1] - w[0]).sign(), (w[0] - w[1]).sign()]).view_as(x)
    assert torch.allclose(x_adv, x + 0.1 * expected)
    loss = nn.functional.cross_entropy
    assert loss(net(x_adv), y) > loss(net(x), y)


def test_pgd_stays_in_the_eps_ball_and_the_image_range():
    net = linear_model(3 * 4 * 4)
    x = torch.rand(8, 3, 4, 4)
    x[:, :, 0] = 0.0
    x[:, :, 1] = 1.0
    y = torch.randint(0, 2, (8,))
    generator = torch.Generator().manual_seed(0)
    x_adv = pgd_attack(net, x, y, eps=8 / 255, step=2 / 255, steps=7, generator=generator)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)
    assert all(p.grad is None for p in net.parameters())


def test_robust_training_fine_tunes_on_pgd_examples(monkeypatch):
    pgd = PGD(steps=2, epochs=1, mix=0.5)
    model = SmerfModel("simple_fr", "pgd", pgd=pgd, epochs=1, batch_size=32)
    train, val = squares(64, 0), squares(16, 1)
    attacked = []
    original = pgd_attack

    def spy(module, images, labels, **kwargs):
        attacked.append(len(images))
        return original(module, images, labels, **kwargs)

    monkeypatch.setattr(models, "pgd_attack", spy)
    net = model.build(2, (3, 16, 16))
    before = [p.detach().clone() for p in net.parameters()]
    model.fit(net, train, seed=0, validation=val)
    assert attacked[:2] == [16, 16]  # half of each batch of 32 during the adversarial epoch
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    verification = model.verify(net, val)
    assert 0.0 <= verification.summary["robust_accuracy"] <= 1.0
    assert all("robust_accuracy" in row for row in verification.table)
