"""The similarity measures against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from attribench_checks import similarity


def test_pixel_maps_sum_channels_signed_or_absolute():
    a = np.array([[[[1.0, -2.0]], [[3.0, 1.0]]]])  # [1, 2, 1, 2]
    np.testing.assert_array_equal(similarity.pixel_maps(a, absolute=False), [[[4.0, -1.0]]])
    np.testing.assert_array_equal(similarity.pixel_maps(a, absolute=True), [[[4.0, 3.0]]])


def test_average_ranks_share_ties():
    ranks = similarity.average_ranks(np.array([[3.0, 1.0, 2.0, 2.0], [5.0, 5.0, 5.0, 0.0]]))
    np.testing.assert_array_equal(ranks, [[4.0, 1.0, 2.5, 2.5], [3.0, 3.0, 3.0, 1.0]])


def test_spearman_by_hand():
    x = np.array([[1.0, 2.0, 3.0, 4.0]] * 3)
    y = np.array([[10.0, 30.0, 20.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 4.0, 9.0, 16.0]])
    # Σd² = 2 → 1 − 6·2 / (4·15) = 0.8; reversed → −1; a monotone transform → 1
    np.testing.assert_allclose(similarity.spearman(x, y), [0.8, -1.0, 1.0])


def test_spearman_with_ties_is_the_pearson_of_average_ranks():
    x = np.array([[1.0, 1.0, 2.0]])
    y = np.array([[1.0, 2.0, 3.0]])
    # ranks (1.5, 1.5, 3) and (1, 2, 3): centred (−.5, −.5, 1) and (−1, 0, 1) → 1.5 / √(1.5·2)
    np.testing.assert_allclose(similarity.spearman(x, y), [1.5 / np.sqrt(3.0)])


def test_correlation_of_a_constant_map_is_undefined():
    assert np.isnan(similarity.spearman(np.ones((1, 4)), np.arange(4.0)[None])).all()


def test_ssim_of_equal_maps_is_one():
    a = np.random.default_rng(0).random((2, 9, 8))
    np.testing.assert_allclose(similarity.ssim(a, a), [1.0, 1.0])
    np.testing.assert_allclose(similarity.ssim(np.zeros((1, 7, 7)), np.zeros((1, 7, 7))), [1.0])


def test_ssim_of_a_spike_and_its_complement_by_hand():
    a = np.zeros((1, 7, 7))
    a[0, 3, 3] = 1.0
    b = 1.0 - a
    # one 7×7 window, n = 49: means 1/49 and 48/49, sample variances 1/49 each, covariance −1/49; range 1
    ma, mb, var, cov = 1 / 49, 48 / 49, 1 / 49, -1 / 49
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (2 * var + c2))
    np.testing.assert_allclose(similarity.ssim(a, b), [expected])


def test_ssim_averages_the_windows_that_fit():
    a = np.zeros((1, 7, 8))
    a[0, :, 0] = 1.0  # only the first of the two windows sees the stripe
    b = a.copy()
    b[0, :, 7] = 1.0  # ... and only the second sees b's extra stripe
    both = similarity.ssim(a, b)
    first = similarity.ssim(a[:, :, :7], b[:, :, :7])
    second = similarity.ssim(a[:, :, 1:], b[:, :, 1:])
    np.testing.assert_allclose(both, (first + second) / 2)


def test_ssim_refuses_maps_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 7×7"):
        similarity.ssim(np.zeros((1, 6, 6)), np.zeros((1, 6, 6)))
