"""Noisy linear imputation: the batched conjugate-gradient path equals the exact dense solve (noise off) on
random, border-touching and 98 %-removed masks; kept pixels are untouched; the noise is as specified."""

from __future__ import annotations

import pytest
import torch
from attribench_soco.imputation import impute, reference_impute


def _masks(kind: str, n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return torch.rand(n, side, side, generator=generator) < 0.5
    if kind == "border":  # whole borders and corners removed
        masks = torch.zeros(n, side, side, dtype=torch.bool)
        masks[:, 0], masks[:, :, -1], masks[:, -3:, :3] = True, True, True
        return masks
    keep = torch.rand(n, side * side, generator=generator).argsort(dim=1)[:, : max(1, side * side // 50)]
    masks = torch.ones(n, side * side, dtype=torch.bool)
    masks.scatter_(1, keep, False)  # 98 % removed
    return masks.view(n, side, side)


@pytest.mark.parametrize("kind", ["random", "border", "98%"])
def test_batched_path_equals_the_exact_solve(kind):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 16, 16, generator=generator)
    masks = _masks(kind, 3, 16, generator)
    fast = impute(images, masks, noise=0.0)
    for i in range(3):
        exact = reference_impute(images[i], masks[i])
        assert (fast[i] - exact).abs().max() <= 1e-3
        torch.testing.assert_close(fast[i], exact, atol=1e-4, rtol=0)
    assert torch.equal(fast[~masks[:, None].expand_as(fast)], images[~masks[:, None].expand_as(images)])


def test_a_single_removed_pixel_is_the_weighted_mean_of_its_neighbours_renormalised_at_the_border():
    image = torch.arange(9, dtype=torch.float64).view(1, 3, 3)
    centre = torch.zeros(3, 3, dtype=torch.bool)
    centre[1, 1] = True
    # centre: (1+3+5+7)/6 + (0+2+6+8)/12 = 16/6 + 16/12 = 4
    assert impute(image[None], centre[None], noise=0.0)[0, 0, 1, 1].item() == pytest.approx(4.0)
    corner = torch.zeros(3, 3, dtype=torch.bool)
    corner[0, 0] = True
    # corner: neighbours 1 and 3 (1/6 each) and 4 (1/12), renormalised by 5/12: (4/6 + 4/12) / (5/12) = 2.4
    assert impute(image[None], corner[None], noise=0.0)[0, 0, 0, 0].item() == pytest.approx(2.4)
    assert reference_impute(image, corner)[0, 0, 0].item() == pytest.approx(2.4)


def test_noise_is_added_to_removed_pixels_only_and_is_seeded():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 32, 32, generator=generator)
    masks = torch.rand(4, 32, 32, generator=generator) < 0.6
    clean = impute(images, masks, noise=0.0)
    noisy = impute(images, masks, generator=torch.Generator().manual_seed(5))
    again = impute(images, masks, generator=torch.Generator().manual_seed(5))
    assert torch.equal(noisy, again)
    diff = (noisy - clean)[masks[:, None].expand_as(noisy)]
    assert diff.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(noisy[~masks[:, None].expand_as(noisy)], images[~masks[:, None].expand_as(images)])


def test_a_warm_start_gives_the_same_answer():
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 24, 24, generator=generator)
    masks = torch.rand(2, 24, 24, generator=generator) < 0.7
    cold = impute(images, masks, noise=0.0)
    warm = impute(images, masks, noise=0.0, init=cold + 0.01)
    torch.testing.assert_close(warm, cold, atol=1e-4, rtol=0)
