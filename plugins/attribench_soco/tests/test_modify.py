"""SoCo's Remove/Introduce modifications (paper Table 3) on hand-computed maps, and the saliency reduction."""

from __future__ import annotations

import pytest
import torch
from attribench_soco.maps import saliency
from attribench_soco.modify import MODES, SCHEMES, modify

# ten features in shuffled order; ascending ranks 0..9 hold the values 0.0, 0.1, ..., 0.9
VALUES = [0.5, 0.9, 0.1, 0.7, 0.0, 0.3, 0.8, 0.2, 0.6, 0.4]
MAP = torch.tensor([VALUES], dtype=torch.float64)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("remove", [0.0, 0.3, 0.0, 0.1, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0]),  # a − 0.6, clipped at 0
        ("introduce", [1.0, 1.0, 0.7, 1.0, 0.6, 0.9, 1.0, 0.8, 1.0, 1.0]),  # a + 0.6, clipped at 1
    ],
)
def test_constant_shifts_every_feature_by_0_6_and_clips(mode, expected):
    out = modify(MAP, mode, "constant")
    torch.testing.assert_close(out, torch.tensor([expected], dtype=torch.float64))


def test_constant_scale_is_an_option():
    torch.testing.assert_close(modify(MAP, "remove", "constant", scale=0.2), (MAP - 0.2).clamp(0, 1))


def test_partial_remove_zeroes_exactly_ascending_ranks_6_and_7():
    expected = [v if v not in (0.6, 0.7) else 0.0 for v in VALUES]
    out = modify(MAP, "remove", "partial", _seeded())
    torch.testing.assert_close(out, torch.tensor([expected], dtype=torch.float64))


def test_partial_introduce_sets_ascending_ranks_0_to_3_to_the_0_8_quantile():
    # sorted values 0.0..0.9: the 0.8 quantile sits at position 0.8·(10−1) = 7.2, i.e. 0.7 + 0.2·0.1 = 0.72
    expected = [0.72 if v < 0.4 else v for v in VALUES]
    out = modify(MAP, "introduce", "partial", _seeded())
    torch.testing.assert_close(out, torch.tensor([expected], dtype=torch.float64))
    assert torch.quantile(MAP, 0.8).item() == pytest.approx(0.72)


def test_partial_ranges_and_quantile_are_options():
    removed = modify(MAP, "remove", "partial", remove_ranks=(0.0, 0.5))
    torch.testing.assert_close(removed, torch.where(MAP < 0.45, 0.0, MAP))
    introduced = modify(MAP, "introduce", "partial", introduce_ranks=(0.0, 0.2), quantile=1.0)
    torch.testing.assert_close(introduced, torch.where(MAP < 0.15, 0.9, MAP))


def test_partial_breaks_ties_at_random_with_the_generator():
    flat = torch.full((1, 10), 0.5)
    picks = [
        tuple(modify(flat, "remove", "partial", _seeded(s))[0].eq(0).nonzero().flatten().tolist())
        for s in range(8)
    ]
    assert all(len(p) == 2 for p in picks)  # always exactly ranks [6, 8)
    assert len(set(picks)) > 1  # which tied features fall there depends on the seed
    again = modify(flat, "remove", "partial", _seeded(3))
    assert torch.equal(again, modify(flat, "remove", "partial", _seeded(3)))


def test_partial_works_per_map_over_all_feature_dims():
    maps = torch.rand(3, 4, 5, generator=_seeded(1))  # 20 features per map: ranks [12, 16) are removed
    out = modify(maps, "remove", "partial", _seeded())
    assert out.shape == maps.shape
    assert (out.flatten(1) != maps.flatten(1)).sum(1).tolist() == [4, 4, 4]
    ranks = maps.flatten(1).argsort(1).argsort(1)
    changed = (out != maps).flatten(1)
    assert torch.equal(changed, (ranks >= 12) & (ranks < 16))


@pytest.mark.parametrize("mode", MODES)
def test_random_shifts_stay_within_0_6_and_point_the_right_way(mode):
    maps = torch.rand(4, 50, generator=_seeded(2))
    out = modify(maps, mode, "random", _seeded())
    if mode == "remove":
        assert (out <= maps).all()
        assert (out >= (maps - 0.6).clamp(min=0)).all()
    else:
        assert (out >= maps).all()
        assert (out <= (maps + 0.6).clamp(max=1)).all()
    assert torch.equal(out, modify(maps, mode, "random", _seeded()))
    assert not torch.equal(out, modify(maps, mode, "random", _seeded(1)))


def test_random_shifts_are_uniform_per_feature():
    shifts = 1 - modify(torch.ones(1, 4000), "remove", "random", _seeded())
    assert shifts.min() >= 0 and shifts.max() < 0.6
    assert shifts.mean().item() == pytest.approx(0.3, abs=0.02)
    assert shifts.std().item() == pytest.approx(0.6 / 12**0.5, abs=0.02)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_without_a_generator_results_are_reproducible(scheme):
    maps = torch.rand(2, 30, generator=_seeded(4))
    assert torch.equal(modify(maps, "introduce", scheme), modify(maps, "introduce", scheme))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_gpu_map_gives_the_cpu_result(scheme):
    maps = torch.rand(2, 8, 8, generator=_seeded(5))
    on_gpu = modify(maps.cuda(), "remove", scheme, _seeded())
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), modify(maps, "remove", scheme, _seeded()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("delete", "constant"), "Unknown mode 'delete'; choose one of remove, introduce."),
        (("remove", "shuffle"), "Unknown scheme 'shuffle'; choose one of constant, random, partial."),
    ],
)
def test_bad_names_are_one_line_errors(args, message):
    with pytest.raises(ValueError) as info:
        modify(MAP, *args)
    assert str(info.value) == message


def test_bad_shapes_and_ranges_are_errors():
    with pytest.raises(ValueError, match="at least one feature dim"):
        modify(torch.zeros(5), "remove", "constant")
    with pytest.raises(ValueError, match="Partial needs ranks"):
        modify(MAP, "remove", "partial", remove_ranks=(0.8, 0.6))


def test_saliency_averages_absolute_channels_then_min_max_normalises_per_image():
    attributions = torch.tensor(
        [
            [[[1.0, -3.0], [0.0, 2.0]], [[-1.0, 1.0], [2.0, 2.0]]],  # |a| mean [[1, 2], [1, 2]]
            [[[0.0, 4.0], [-2.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]],  # |a| mean [[0, 2], [1, 1]]
        ]
    )
    expected = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.5, 0.5]]])
    torch.testing.assert_close(saliency(attributions), expected)


def test_saliency_of_a_single_channel_and_of_a_constant_map():
    single = torch.tensor([[[[-2.0, 0.0], [1.0, 2.0]]], [[[3.0, -3.0], [3.0, 3.0]]]])
    expected = torch.tensor([[[1.0, 0.0], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(saliency(single), expected)


def test_saliency_wants_four_dims():
    with pytest.raises(ValueError, match=r"\[N,C,H,W\]"):
        saliency(torch.zeros(2, 4, 4))
