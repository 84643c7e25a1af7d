"""Localisation maths against hand-computed cases and a plain numpy reference."""

import types

import numpy as np
import pytest
import torch

from attribench_core.builtin import localisation as loc
from attribench_core.builtin.toy import make_toy
from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.runner import RunRequest, run
from attribench_core.testing import plugin_registry

MAP = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]])  # total 12
MASK = torch.tensor([[[False, True, True], [False, True, False], [False, False, False]]])  # 1 + 2 + 4 = 7


def test_relevance_mass_hand_computed():
    assert loc.relevance_mass(MAP, MASK).item() == pytest.approx(7 / 12)


def test_relevance_rank_hand_computed():
    # mask area 3; the three largest values are 4 (in), 3 (out), 2 at (0,2) (in; first of the tied 2s) -> 2/3
    assert loc.relevance_rank(MAP, MASK).item() == pytest.approx(2 / 3)


def test_pointing_game_hand_computed():
    assert loc.pointing_game(MAP, MASK).item() == 1.0
    assert loc.pointing_game(MAP, ~MASK).item() == 0.0
    corner = torch.zeros(1, 3, 3, dtype=torch.bool)
    corner[0, 2, 2] = True  # the max (1,1) is one pixel away diagonally
    assert loc.pointing_game(MAP, corner, tolerance=0).item() == 0.0
    assert loc.pointing_game(MAP, corner, tolerance=1).item() == 1.0


def test_empty_mask_and_zero_map_give_nan():
    empty = torch.zeros_like(MASK)
    assert torch.isnan(loc.relevance_rank(MAP, empty)).all()
    assert torch.isnan(loc.pointing_game(MAP, empty)).all()
    assert torch.isnan(loc.relevance_mass(torch.zeros_like(MAP), MASK)).all()


def test_to_map_reductions():
    a = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])  # [1,2,1,2]
    assert loc.to_map(a, "positive").tolist() == [[[1.0, 4.0]]]
    assert loc.to_map(a, "absolute").tolist() == [[[4.0, 6.0]]]
    assert loc.to_map(a, "signed").tolist() == [[[-2.0, 2.0]]]
    assert loc.to_map(a, "pooled_positive").tolist() == [[[0.0, 2.0]]]  # sum over channels, then clamp
    with pytest.raises(ValueError, match="Unknown reduction"):
        loc.to_map(a, "max")


def _reference(maps: np.ndarray, masks: np.ndarray) -> tuple[list, list, list]:
    mass, rank, point = [], [], []
    for m, g in zip(maps, masks, strict=True):
        mass.append(m[g].sum() / m.sum())
        k = int(g.sum())
        top = np.argsort(-m.ravel(), kind="stable")[:k]
        rank.append(g.ravel()[top].mean())
        point.append(float(g.ravel()[np.argmax(m.ravel())]))
    return mass, rank, point


def test_batched_functions_match_a_per_sample_numpy_reference():
    rng = np.random.default_rng(0)
    maps = rng.random((50, 8, 8)).astype(np.float32)
    masks = rng.random((50, 8, 8)) < 0.3
    masks[:, 0, 0] = True
    mass, rank, point = _reference(maps, masks)
    m, g = torch.from_numpy(maps), torch.from_numpy(masks)
    np.testing.assert_allclose(loc.relevance_mass(m, g).numpy(), mass, rtol=1e-5)
    np.testing.assert_allclose(loc.relevance_rank(m, g).numpy(), rank, rtol=1e-6)
    np.testing.assert_array_equal(loc.pointing_game(m, g).numpy(), point)


def test_mean_over_categories_weighs_each_category_the_same():
    hits = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    labels = np.array([0, 0, 0, 0, 1, 1])  # category 0: 3/4, category 1: 1/2
    assert loc.mean_over_categories(hits, labels) == pytest.approx((3 / 4 + 1 / 2) / 2)


class SilentOnClassZero(Explainer):
    """The input gradient, but an all-zero map for images whose target is class 0."""

    def explain(self, model, inputs, targets):
        x = inputs.clone().requires_grad_(True)
        grad = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]
        return grad * (targets != 0)[:, None, None, None]


@hookimpl
def register_explainers(register):
    register("silent", f"{__name__}:SilentOnClassZero", description="gradient, abstaining on class 0")


PLUGIN = types.SimpleNamespace(register_explainers=register_explainers)


def _run(tmp_path, metric: str, **options):
    request = RunRequest(metric, ("test.silent",), num_imgs=24, store=tmp_path / "s.h5", options=options)
    return run(plugin_registry({"test": PLUGIN}), request).results["test.silent"]


def test_all_zero_maps_score_zero_and_are_counted(tmp_path):
    """Abstaining earns nothing: an all-zero map scores 0 (it was skipped before), and the mean over the
    other maps is kept beside the headline."""
    result = _run(tmp_path, "core.relevance_mass")
    labels = make_toy("test", seed=0).labels[result.index]
    silent = labels == 0
    assert 0 < silent.sum() < len(labels) and result.n == 24 and not result.skipped
    assert result.values["all_zero_maps"] == silent.sum()
    scores = result.per_sample["relevance_mass"]
    assert (scores[silent] == 0).all() and result.value == pytest.approx(scores.mean())
    assert result.values["relevance_mass_excluding_all_zero"] == pytest.approx(scores[~silent].mean())


def test_pointing_game_over_categories_is_zhangs_average(tmp_path):
    by_image = _run(tmp_path, "core.pointing_game")
    assert by_image.uncertainty.kind == "wilson_ci95"
    result = _run(tmp_path, "core.pointing_game", average="categories")
    labels = make_toy("test", seed=0).labels[result.index]
    hits = result.per_sample["pointing_game"]
    per_category = [hits[labels == c].mean() for c in np.unique(labels)]
    assert result.value == pytest.approx(np.mean(per_category))
    assert result.values["pointing_game_over_images"] == pytest.approx(hits.mean()) == by_image.value
    assert result.values["categories"] == len(per_category)
    assert result.uncertainty.kind == "mover_wilson_ci95"
    assert result.uncertainty.low <= result.value <= result.uncertainty.high
