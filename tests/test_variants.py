"""Maps of variants: perturbed inputs and altered models are computed by the runner, stored under their own
keys, reused by a second run, the same whatever the batch size or executor; the `random_other` target."""

from __future__ import annotations

from dataclasses import dataclass, replace

import abfixture.plugin
import numpy as np
import pytest
import torch

from attribench_core import Alteration, AttributionRequest, Metric, Perturbation, Result, hookimpl
from attribench_core.runner import RunRequest, execute, plan, prepare, run
from attribench_core.testing import ShuffledExecutor, plugin_registry


@dataclass(frozen=True)
class Shift(Perturbation):
    """Adds `amount` plus U[0, noise) per pixel, from each image's generator."""

    amount: float
    noise: float = 0.0

    def perturb(self, images, generators):
        noise = torch.stack([torch.rand(images.shape[1:], generator=g) for g in generators])
        return images + self.amount + self.noise * noise.to(images.device)


@dataclass(frozen=True)
class ScaleLastLayer(Alteration):
    """Multiplies the last linear layer's weights by `factor` (and by U[0.5, 1) if `random`)."""

    factor: float
    random: bool = False

    def alter(self, module, generator):
        last = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            scale = torch.rand(last.weight.shape, generator=generator) * 0.5 + 0.5 if self.random else 1.0
            last.weight.mul_(self.factor * scale)
        return module


SHIFT, SCALE = Shift(0.25), ScaleLastLayer(-1.0)


class VariantMaps(Metric):
    """Asks for plain, shifted, altered and random-other maps; its value is the mean of the shifted ones."""

    higher_is_better = True
    category = "sanity"
    dataset = "core.toy"
    model = "core.toy_cnn"
    variants = (
        {},
        {"perturbation": SHIFT},
        {"alteration": SCALE},
        {"perturbation": Shift(0.0, 0.5), "alteration": ScaleLastLayer(1.0, True)},
        {"target": "random_other"},
    )

    def requests(self, ctx):
        index = tuple(map(int, ctx.index))
        return [AttributionRequest(ctx.dataset_name, ctx.model_name, index, **v) for v in self.variants]

    def compute(self, ctx, explainer):
        maps = [np.concatenate([s.attribution for s in ctx.stored_batches(explainer, perturbation=SHIFT)])]
        return Result(float(np.mean(maps)), n=len(ctx.index))


class VariantPlugin:
    @hookimpl
    def register_metrics(self, register):
        register("variants", VariantMaps)


@pytest.fixture
def registry():
    return plugin_registry({"t": abfixture.plugin, "v": VariantPlugin(), "x": ShuffledExecutor.plugin()})


def _ctx(registry, tmp_path, **changes):
    request = RunRequest("v.variants", ["t.grad", "t.noise"], num_imgs=5, batch_size=2)
    return prepare(registry, replace(request, **{"store": tmp_path / "store.h5", **changes}))


def _maps(ctx, explainer="t.grad", **variant):
    stored = list(ctx.stored_batches(explainer, **variant))
    return (
        np.concatenate([s.attribution for s in stored]),
        np.concatenate([s.target for s in stored]),
        np.concatenate([s.prediction for s in stored]),
    )


def _gradient(model, images, target):
    images = images.clone().requires_grad_(True)
    model(images).gather(1, target[:, None]).sum().backward()
    return images.grad.numpy()


def test_variant_maps_are_the_maps_of_the_perturbed_inputs_and_of_the_altered_model(registry, tmp_path):
    ctx = _ctx(registry, tmp_path)
    tasks = plan(ctx)
    assert len(tasks) == 10 and len({t.key for t in tasks}) == 10  # 5 variants × 2 explainers
    execute(ctx, tasks)
    model = ctx.load_model(ctx.model_name)
    images = ctx.dataset.batch(ctx.index).images
    plain, target, prediction = _maps(ctx)
    assert (target == prediction).all()
    shifted, shifted_target, shifted_prediction = _maps(ctx, perturbation=SHIFT)
    assert (shifted_target == target).all()  # the unperturbed prediction is explained
    with torch.no_grad():
        assert (shifted_prediction == model(images + 0.25).argmax(1).numpy()).all()
    np.testing.assert_allclose(shifted, _gradient(model, images + 0.25, torch.as_tensor(target)), atol=1e-6)
    altered, altered_target, altered_prediction = _maps(ctx, alteration=SCALE)
    assert (altered_target == target).all() and (altered_prediction != prediction).any()
    flipped = ctx.altered_model(ctx.model_name, SCALE)
    np.testing.assert_allclose(altered, _gradient(flipped, images, torch.as_tensor(target)), atol=1e-6)
    assert flipped is not model and not np.allclose(altered, plain)
    np.testing.assert_allclose(_gradient(model, images, torch.as_tensor(target)), plain, atol=1e-6)
    other, other_target, _ = _maps(ctx, target="random_other")
    assert (other_target != target).all() and other_target.max() < 10
    assert not np.allclose(other, plain)


def test_variant_maps_are_reused_and_independent_of_batches_and_executor(registry, tmp_path):
    first = run(
        registry,
        replace(
            RunRequest("v.variants", ["t.grad", "t.noise"], num_imgs=5, batch_size=2), store=tmp_path / "a.h5"
        ),
    )
    assert first.computed == 50
    again = run(
        registry,
        replace(
            RunRequest("v.variants", ["t.grad", "t.noise"], num_imgs=5, batch_size=2), store=tmp_path / "a.h5"
        ),
    )
    assert again.computed == 0
    a = _ctx(registry, tmp_path, store=tmp_path / "a.h5")
    b = _ctx(registry, tmp_path, store=tmp_path / "b.h5", batch_size=3, executor="x.shuffled")
    b.executor = ShuffledExecutor(seed=3)
    execute(b, plan(b))
    noisy = {"perturbation": Shift(0.0, 0.5), "alteration": ScaleLastLayer(1.0, True)}
    for variant in ({}, {"perturbation": SHIFT}, noisy, {"target": "random_other"}):
        # (t.noise draws per batch, so only the gradient can be compared across batch sizes)
        for x, y in zip(_maps(a, **variant), _maps(b, **variant), strict=True):
            np.testing.assert_allclose(x, y, atol=1e-6)  # batched convolutions: float noise


def test_plain_maps_keep_their_key(registry, tmp_path):
    ctx = _ctx(registry, tmp_path)
    config = ctx.explainers["t.grad"]
    plain = ctx.group_key(ctx.dataset_name, ctx.model_name, config, "prediction")
    assert plain == ctx.group_key(ctx.dataset_name, ctx.model_name, config, "prediction", None, None)
    shifted = ctx.group_key(ctx.dataset_name, ctx.model_name, config, "prediction", SHIFT)
    assert shifted != plain and shifted == ctx.group_key(
        ctx.dataset_name, ctx.model_name, config, "prediction", Shift(0.25)
    )
    assert shifted != ctx.group_key(ctx.dataset_name, ctx.model_name, config, "prediction", Shift(0.5))
