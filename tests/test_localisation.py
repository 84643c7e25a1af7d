"""Localisation maths against hand-computed cases and a plain numpy reference."""

import numpy as np
import pytest
import torch

from attribench_core.builtin import localisation as loc

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
