"""Noisy linear imputation: the batched multigrid-preconditioned path equals the exact dense solve (noise off)
on random, border-touching, 98 %-removed and attribution-shaped masks, in float32 and on odd sizes, within
a few iterations and from a warm start, and solved in chunks as in one piece; its preconditioner is
symmetric positive definite (as conjugate gradients need); kept pixels are untouched; the noise is as
specified."""

from __future__ import annotations

import pytest
import torch
from attribench_soco import imputation
from attribench_soco.imputation import _Multigrid, impute, reference_impute


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


def _attribution_masks(n: int, side: int, removed: float, generator: torch.Generator) -> torch.Tensor:
    """The `removed` fraction of lowest values of smooth blob maps plus a little noise (LeRF-like)."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    maps = 0.05 * torch.rand(n, side, side, generator=generator)
    for _ in range(3):
        centre = torch.rand(n, 2, 1, 1, generator=generator) * side
        width = (0.05 + 0.2 * torch.rand(n, 1, 1, generator=generator)) * side
        maps += torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / (2 * width**2))
    order = maps.flatten(1).argsort(dim=1)
    masks = torch.zeros(n, side * side, dtype=torch.bool)
    masks.scatter_(1, order[:, : int(removed * side * side)], True)
    return masks.view(n, side, side)


def _assert_exact(fast: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> None:
    for i in range(len(images)):
        exact = reference_impute(images[i].double(), masks[i]).to(fast.dtype)
        assert (fast[i] - exact).abs().max() <= 1e-3
        torch.testing.assert_close(fast[i], exact, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["random", "border", "98%"])
def test_batched_path_equals_the_exact_solve(kind):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 16, 16, generator=generator)
    masks = _masks(kind, 3, 16, generator)
    fast = impute(images, masks, noise=0.0)
    _assert_exact(fast, images, masks)
    assert torch.equal(fast[~masks[:, None].expand_as(fast)], images[~masks[:, None].expand_as(images)])


def test_large_attribution_shaped_removals_in_float32_converge_within_a_few_iterations():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 48, 48, generator=generator) * 4 - 2  # normalised-space values
    masks = _attribution_masks(2, 48, 0.9, generator)
    fast = impute(images, masks, noise=0.0, max_iter=10)
    assert fast.dtype == torch.float32
    _assert_exact(fast, images, masks)


@pytest.mark.parametrize("shape", [(3, 5), (17, 10), (9, 24)])
def test_odd_and_rectangular_sizes(shape):
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(2, 2, *shape, generator=generator, dtype=torch.float64)
    masks = torch.rand(2, *shape, generator=generator) < 0.7
    masks[:, 0, 0] = False  # at least one kept pixel
    fast = impute(images, masks, noise=0.0)
    assert fast.dtype == torch.float64
    _assert_exact(fast, images, masks)


def test_the_preconditioner_is_symmetric_positive_definite():
    generator = torch.Generator().manual_seed(5)
    masks = _attribution_masks(2, 36, 0.8, generator) | (torch.rand(2, 36, 36, generator=generator) < 0.3)
    multigrid = _Multigrid.build(masks, torch.float64)
    a, b = (
        torch.randn(3, 36, 36, 2, generator=generator, dtype=torch.float64) * multigrid.removed for _ in "ab"
    )
    va, vb = multigrid(a), multigrid(b)
    assert torch.allclose((va * b).sum(), (a * vb).sum(), rtol=1e-10)
    assert ((va * a).sum(dim=(1, 2)) > 0).all()


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


def test_warm_starts_along_a_lerf_sweep_equal_cold_solves():
    """As the soundness sweep calls it: each step un-removes more pixels, warm-started from the previous
    step's noisy images."""
    generator = torch.Generator().manual_seed(6)
    images = torch.rand(2, 3, 32, 32, generator=generator)
    previous = None
    for removed in (0.95, 0.9, 0.85, 0.8):
        masks = _attribution_masks(2, 32, removed, torch.Generator().manual_seed(7))
        warm = impute(images, masks, noise=0.0, init=previous)
        torch.testing.assert_close(warm, impute(images, masks, noise=0.0), atol=2e-4, rtol=0)
        previous = impute(images, masks, generator=generator, init=previous)


def test_chunks_advance_in_lockstep_to_the_values_of_the_whole_batch(monkeypatch):
    """5 images in chunks of 1, 2 and 2 (the default chunking, its budget shrunk to 2 images of this size),
    warm-started and with noise as the sweep calls it: the whole batch's values up to rounding (chunks that
    stopped on their own would differ by ~3e-5 here) and the same noise; noise off, the exact solve."""
    generator = torch.Generator().manual_seed(10)
    images = torch.rand(5, 3, 20, 20, generator=generator)
    masks = _attribution_masks(5, 20, 0.9, generator)
    init = impute(images, _attribution_masks(5, 20, 0.95, generator), generator=generator)
    whole = impute(images, masks, init=init, generator=torch.Generator().manual_seed(11), chunk=5)
    # 2 images' finest coefficient maps: 9 over the 21×21 span, float32
    monkeypatch.setattr(imputation, "CHUNK_BYTES", 2 * 9 * 21 * 21 * 4)
    assert imputation.chunk_size(images) == 2
    chunked = impute(images, masks, init=init, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    _assert_exact(impute(images, masks, noise=0.0), images, masks)


def test_a_chunk_must_hold_an_image():
    with pytest.raises(ValueError, match="chunk=0"):
        impute(torch.rand(2, 1, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool), chunk=0)


def test_an_empty_batch_imputes_to_an_empty_batch():
    empty = impute(torch.rand(0, 3, 8, 8), torch.ones(0, 8, 8, dtype=torch.bool))
    assert empty.shape == (0, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_values_and_noise():
    generator = torch.Generator().manual_seed(8)
    images = torch.rand(2, 3, 40, 40, generator=generator)
    masks = _attribution_masks(2, 40, 0.9, generator)
    cpu = impute(images, masks, generator=torch.Generator().manual_seed(9))
    cuda = impute(images.cuda(), masks.cuda(), generator=torch.Generator().manual_seed(9))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)


def test_an_image_with_every_pixel_removed_becomes_0_even_from_a_warm_start():
    images = torch.rand(2, 3, 12, 12)
    masks = torch.ones(2, 12, 12, dtype=torch.bool)
    masks[1, 5, 5] = False  # the other image keeps one pixel: its value spreads everywhere
    out = impute(images, masks, noise=0.0, init=torch.rand(2, 3, 12, 12) * 100)
    assert torch.equal(out[0], torch.zeros(3, 12, 12))
    torch.testing.assert_close(out[1], images[1, :, 5:6, 5:6].expand(3, 12, 12), atol=1e-3, rtol=0)
