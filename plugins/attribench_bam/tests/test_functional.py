"""BAM metric maths against hand-computed cases and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from attribench_bam import functional as fn

NAN = float("nan")


def test_normalised_map_positive_part_summed_over_channels_hand_computed():
    # channel sums of the positive parts: [[0, 1], [2, 4]] (the -5 and -1 are dropped, not absolute)
    attributions = torch.tensor([[[[-5.0, 1.0], [2.0, 3.0]], [[0.0, -1.0], [0.0, 1.0]]]])
    # min 0; p99 at rank 0.99·3 = 2.97 of the sorted [0, 1, 2, 4]: 2 + 0.97·(4 − 2) = 3.94
    expected = torch.tensor([[[0.0, 1 / 3.94], [2 / 3.94, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(fn.normalised_map(attributions), expected)


def test_normalised_map_accepts_all_three_layouts():
    maps = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(0))
    reference = fn.normalised_map(maps)
    torch.testing.assert_close(fn.normalised_map(maps[:, None]), reference)
    torch.testing.assert_close(fn.normalised_map(torch.stack([maps, -maps], dim=1)), reference)


def test_normalised_map_percentile_is_numpys_default():
    maps = torch.randn(3, 7, 9, generator=torch.Generator().manual_seed(1)).exp()
    flat = maps.flatten(1).numpy().astype(np.float64)
    low, p99 = flat.min(1), np.percentile(flat, 99, axis=1)
    expected = np.clip((flat - low[:, None]) / (p99 - low)[:, None], 0, 1).reshape(maps.shape)
    np.testing.assert_allclose(fn.normalised_map(maps).numpy(), expected, rtol=1e-12)
    # on 63 pixels the top one lies above p99 and is clipped to 1
    assert (fn.normalised_map(maps).flatten(1).amax(1) == 1).all()


def test_normalised_map_degenerate_span():
    constant = torch.full((1, 3, 4, 4), 0.7)
    assert (fn.normalised_map(constant) == 0).all()
    # one pixel of 100 above the minimum: p99 = min, so the formula's limit 0 / 1 applies
    sparse = torch.zeros(1, 10, 10)
    sparse[0, 3, 4] = 2.0
    assert fn.normalised_map(sparse).equal(sparse.to(torch.float64) / 2)


def test_object_attribution_is_the_mean_over_the_mask():
    normalised = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[1.0, 1.0], [1.0, 1.0]]])
    masks = torch.tensor([[[True, True], [False, True]], [[False, False], [False, False]]])
    g = fn.object_attribution(normalised, masks)
    assert g[0].item() == pytest.approx(0.75 / 3)
    assert math.isnan(g[1].item())  # empty mask


KEEP = np.array([True, True, False, True, True])


def test_mcs_hand_computed_with_keep_filter():
    second = torch.tensor([0.1, 0.7, 1.0, 0.2, NAN], dtype=torch.float64)  # tensors and arrays both work
    result = fn.mcs([0.9, 0.5, 0.0, 0.2, 0.4], second, KEEP)
    np.testing.assert_allclose(result.per_image, [0.8, -0.2, 0.0, NAN])
    assert result.index.tolist() == [0, 1, 3, 4]
    assert (result.n_kept, result.n_dropped) == (4, 1)
    assert result.value == pytest.approx(0.6 / 3)  # the NaN is undefined, not zero


def test_idr_strict_inequality():
    # without > with: yes; equal (the boundary): no; dropped; smaller: no; undefined
    result = fn.idr([0.6, 0.3, 0.9, 0.1, NAN], [0.5, 0.3, 0.1, 0.2, 0.4], KEEP)
    np.testing.assert_array_equal(result.per_image, [1.0, 0.0, 0.0, NAN])
    assert result.value == pytest.approx(1 / 3) and result.n_dropped == 1


def test_iir_relative_strict_threshold():
    clean = np.array([0.5, 0.5, 0.5, 0.5, 0.0])
    # threshold 0.125 makes the boundary exact in binary: 0.125 · 0.5 = 0.0625.
    # |Δ| = 0.04: yes; 0.0625 (the boundary): no; dropped; 0.1: no; g(x) = 0, unchanged: 0 < 0 is false
    patched = np.array([0.46, 0.5625, 0.5, 0.6, 0.0])
    result = fn.iir(clean, patched, KEEP, threshold=0.125)
    np.testing.assert_array_equal(result.per_image, [1.0, 0.0, 0.0, 0.0])
    assert result.value == 0.25
    default = fn.iir(clean, [0.46, 0.56, 0.5, 0.5, 0.0], np.ones(5, bool))  # 0.1 · 0.5 = 0.05
    np.testing.assert_array_equal(default.per_image, [1.0, 0.0, 1.0, 1.0, 0.0])


def test_iir_undefined_where_g_is_nan():
    result = fn.iir([NAN, 0.4], [0.4, NAN], [True, True])
    assert np.isnan(result.per_image).all() and math.isnan(result.value)


def test_rmcs_against_the_last_model_with_per_pair_filter():
    g = np.array([[0.9, 0.8, 0.7], [0.5, 0.6, 0.1], [0.2, 0.3, 0.4]])  # K = 3 models, N = 3 images
    common = fn.rmcs(g, [True, False, True])
    np.testing.assert_allclose([r.per_image for r in common], [[0.7, 0.3], [0.3, -0.3]])
    assert [r.value for r in common] == pytest.approx([0.5, 0.0])
    correct = np.array([[True, True, False], [False, True, True], [True, True, True]])
    per_pair = fn.rmcs(torch.tensor(g), correct)  # pair i keeps images correct for model i and the last
    assert [r.index.tolist() for r in per_pair] == [[0, 1], [1, 2]]
    assert [r.value for r in per_pair] == pytest.approx([(0.7 + 0.5) / 2, (0.3 - 0.3) / 2])
    assert [r.n_dropped for r in per_pair] == [1, 1]


def test_is_decreasing():
    assert fn.is_decreasing([0.3, 0.2, 0.1, -0.1])
    assert not fn.is_decreasing(np.array([0.3, 0.3, 0.1]))  # strictly
    assert not fn.is_decreasing([0.3, NAN, 0.1])


def test_metric_value_with_nothing_kept_is_nan():
    result = fn.mcs([0.1, 0.2], [0.0, 0.0], [False, False])
    assert (result.n_kept, result.n_dropped) == (0, 2) and math.isnan(result.value)


def test_keep_must_match_the_images():
    with pytest.raises(ValueError, match="keep has shape"):
        fn.mcs([0.1, 0.2], [0.0, 0.0], [True])


def test_label_probability_drop_hand_computed():
    # image 0: p(label 0) = 1/2 with (logits equal), e^0/(e^0 + e^ln3) = 1/4 without: drop 1/4
    # image 1: label 1, logits [0, ln 3] → 3/4 with; [0, 0] → 1/2 without: drop 1/4; negative when it rises
    with_ = [[0.0, 0.0], [0.0, math.log(3)], [0.0, 0.0]]
    without = [[0.0, math.log(3)], [0.0, 0.0], [math.log(3), 0.0]]
    drops = fn.label_probability_drop(with_, without, [0, 1, 0])
    np.testing.assert_allclose(drops, [0.25, 0.25, 0.5 - 0.75])
