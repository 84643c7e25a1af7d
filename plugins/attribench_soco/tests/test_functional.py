"""SoCo's maths by hand: orders with random ties, area and value masks, the soundness accounting and
judgement, the curve summary and the Hausdorff distances."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from attribench_soco import functional


def test_the_sweeps_have_the_original_lengths():
    assert len(functional.SOUNDNESS_RATIOS) == 96
    assert functional.SOUNDNESS_RATIOS[0] == 0.98 and functional.SOUNDNESS_RATIOS[-1] == 0.03
    assert functional.COMPLETENESS_THRESHOLDS == (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
    assert functional.AREA_RATIOS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_removed_count_survives_floating_point():
    assert functional.removed_count(100, 0.58) == 58  # int(100 * 0.58) is 57
    assert functional.removed_count(4096, 0.5) == 2048


def test_ascending_order_sorts_and_breaks_ties_at_random():
    maps = torch.tensor([[0.5, 0.0, 0.5, 0.2, 0.5, 0.0]])
    orders = {
        tuple(functional.ascending_order(maps, torch.Generator().manual_seed(s))[0].tolist())
        for s in range(20)
    }
    for order in orders:
        assert maps[0, list(order)].tolist() == sorted(maps[0].tolist())
    assert len(orders) > 1  # the tied 0s and 0.5s come in different orders
    order = functional.ascending_order(maps, torch.Generator().manual_seed(0))
    assert torch.equal(functional.ranks(order)[0, order[0]], torch.arange(6))


def test_area_masks_remove_the_least_or_the_most_attributed():
    maps = torch.tensor([[0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4, 0.6, 1.0]])
    rank = functional.ranks(functional.ascending_order(maps))
    assert functional.removed_by_area(rank, 0.3, "lerf")[0].nonzero().flatten().tolist() == [0, 2, 5]
    assert functional.removed_by_area(rank, 0.2, "morf")[0].nonzero().flatten().tolist() == [1, 9]
    with pytest.raises(ValueError, match="Unknown order 'up'"):
        functional.removed_by_area(rank, 0.2, "up")


def test_value_masks_remove_what_is_strictly_above_the_threshold_times_the_maximum():
    maps = torch.tensor([[0.0, 0.25, 0.5, 1.0], [0.0, 0.1, 0.2, 0.4]])
    removed = functional.removed_by_value(maps, 0.5)
    assert removed.tolist() == [[False, False, False, True], [False, False, False, True]]


def test_soundness_accounting_and_judgement_by_hand():
    # ten features; ascending order is the index order; ratios remove 8, 7, 6, 5 of them
    maps = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 1.0]])
    order = torch.arange(10)[None]
    accounting = functional.soundness_accounting(maps, order, (0.8, 0.7, 0.6, 0.5))
    np.testing.assert_allclose(accounting.kept[:, 0], [1.4, 1.7, 1.9, 2.0])
    np.testing.assert_allclose(accounting.added[:, 0], [1.4, 0.3, 0.2, 0.1])
    # 200 images: 100 correct (first step, never judged), 160 (rose), 161 (rose by 1 < 0.01·200: false),
    # 120 (fell: false)
    flagged = functional.false_steps(np.array([100, 160, 161, 120]), 200)
    assert flagged.tolist() == [False, False, True, True]
    ratios = functional.soundness_ratios(accounting, flagged)[:, 0]
    np.testing.assert_allclose(ratios, [1.0, 1.0, (1.9 - 0.2) / 1.9, (2.0 - 0.3) / 2.0])


# accuracy levels k/100 at which the float test k/100 − (k−1)/100 < 0.01 held: a rise of exactly one image
# (from k−1 to k correct out of 100) was judged false
FLOAT_FALSE_AT = (3, 6, 8, 9, 11, 12, 15, 18, 21, 24, 29, 35, 41, 47, 57, 69, 82, 94)


def test_soundness_judges_counts_so_a_one_image_rise_is_real_at_every_level():
    # N = 100, ε = 0.01: a rise of exactly one image is ε·N, not below it, so it is never false; no rise is
    assert [k for k in range(1, 100) if k / 100 - (k - 1) / 100 < 0.01] == list(FLOAT_FALSE_AT)
    for k in range(1, 100):  # FLOAT_FALSE_AT among them; no start level, so every step is judged
        flagged = functional.false_steps(np.array([k - 1, k, k]), 100, start=Fraction(0))
        assert flagged.tolist() == [False, False, True], k
    # at 200 images ε·N = 2: a one-image rise is false, a two-image rise is real
    assert functional.false_steps(np.array([56, 57, 59]), 200).tolist() == [False, True, False]
    with pytest.raises(TypeError, match="counts of correct images"):
        functional.false_steps(np.array([0.5, 0.6]), 100)


def test_steps_at_chance_level_are_not_judged_and_scores_are_judged_per_sample():
    # 100 images: 2, 3 and 4 correct are at or below START = 0.04 (never judged); 50 → 50 is false
    assert functional.false_steps(np.array([2, 3, 4, 50, 50]), 100).tolist() == [False] * 4 + [True]
    scores = np.array([[1.0, 1.0], [2.0, 1.0], [2.0, 3.0]])  # [T, N]
    assert functional.false_score_steps(scores).tolist() == [
        [False, False],
        [False, True],
        [True, False],
    ]


def test_soundness_is_nan_while_nothing_attributed_is_kept():
    accounting = functional.SoundnessAccounting(np.array([[0.0], [1.0]]), np.array([[0.0], [1.0]]))
    ratios = functional.soundness_ratios(accounting, np.array([False, True]))
    assert np.isnan(ratios[0, 0]) and ratios[1, 0] == 0.0


def test_nanmean_skips_what_is_not_finite_and_is_nan_without_a_warning_where_nothing_is(recwarn):
    values = np.array([[0.0, np.nan], [1.0, np.nan], [np.inf, np.nan]])
    np.testing.assert_array_equal(functional.nanmean(values, axis=0), [0.5, np.nan])
    assert not recwarn.list


def test_hausdorff_distances_by_hand():
    a = np.array([[0.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    assert functional.hausdorff(a, b) == pytest.approx(np.sqrt(2))  # (2,1) is √2 from (1,0)
    assert functional.hausdorff(b, a) == functional.hausdorff(a, b)
    c = a + np.array([0.0, 0.1])
    assert functional.minimal_hausdorff([a, b, c]) == pytest.approx(0.1)


def test_rise_kernel_is_scipys_gaussian_filter_of_an_impulse():
    # scipy.ndimage.gaussian_filter(impulse 11×11, 5) (scipy 1.17.1): centre, corner, sum
    kernel = functional.rise_kernel()
    assert kernel.shape == (11, 11) and kernel.sum() == pytest.approx(1.0)
    assert kernel[5, 5] == pytest.approx(0.008832628216191647, abs=1e-15)
    assert kernel[0, 0] == pytest.approx(0.007736635408576913, abs=1e-15)


def test_blur_convolves_each_channel_with_zero_padding():
    images = torch.zeros(1, 2, 11, 11, dtype=torch.float64)
    images[0, 1, 5, 5] = 1.0  # an impulse in channel 1 becomes the kernel there; channel 0 stays 0
    blurred = functional.blur(images)
    np.testing.assert_allclose(blurred[0, 1].numpy(), functional.rise_kernel(), atol=1e-15)
    assert blurred[0, 0].abs().max() == 0
    ones = functional.blur(torch.ones(1, 1, 11, 11, dtype=torch.float64))
    assert ones[0, 0, 5, 5] == pytest.approx(1.0) and ones[0, 0, 0, 0] < 0.5  # zero padding darkens borders


def test_rise_steps_and_area_under_the_curve_by_hand():
    assert functional.rise_counts(50176) == [224 * i for i in range(225)]  # RISE on 224²: 224 steps of 224
    assert functional.rise_counts(10, 4) == [0, 3, 6, 9, 10]  # step ⌈10/4⌉ = 3, ⌈10/3⌉ = 4 steps
    # trapezoids over 4 equal intervals: (1 + 0.5)/2 + (0.5 + 0.5)/2 + (0.5 + 0)/2 + 0 = 1.5, over 4
    curve = np.array([[1.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(functional.rise_auc(curve), [1.5 / 4, (0 + 0.5 + 1 + 1) / 4])
