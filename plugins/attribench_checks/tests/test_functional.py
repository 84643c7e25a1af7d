import math

import numpy as np
import pytest
from attribench_checks import functional

# one 2×2 map, two channels: |a| summed over channels is [[0, 1], [2, 3]]
MAP = np.array([[[[0.0, 1.0], [-2.0, 1.0]], [[0.0, 0.0], [0.0, -2.0]]]])


def test_magnitudes_are_abs_summed_over_channels_one_row_per_sample():
    np.testing.assert_array_equal(functional.pixel_magnitudes(MAP), [[0.0, 1.0, 2.0, 3.0]])


def test_gini_of_a_hand_computed_map():
    # sorted 0, 1, 2, 3; weights 2i − n − 1 = −3, −1, 1, 3: (0 − 1 + 2 + 9) / (4 · 6)
    assert functional.gini(functional.pixel_magnitudes(MAP))[0] == pytest.approx(10 / 24)


def test_entropy_of_a_hand_computed_map():
    # shares 0, 1/6, 2/6, 3/6; the zero pixel adds nothing
    expected = -(1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6))
    assert functional.entropy(functional.pixel_magnitudes(MAP))[0] == pytest.approx(expected)


def test_a_constant_map_has_gini_0_and_entropy_log_n():
    constant = np.full((1, 9), 0.5)
    assert functional.gini(constant)[0] == pytest.approx(0.0)
    assert functional.entropy(constant)[0] == pytest.approx(math.log(9))


def test_a_single_nonzero_pixel_has_gini_n_minus_1_over_n_and_entropy_0():
    single = np.zeros((1, 8))
    single[0, 3] = 2.0
    assert functional.gini(single)[0] == pytest.approx(7 / 8)
    assert functional.entropy(single)[0] == pytest.approx(0.0)


def test_an_all_zero_map_has_no_value_and_does_not_disturb_its_batch():
    batch = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(functional.all_zero(batch), [True, False])
    gini, entropy = functional.gini(batch), functional.entropy(batch)
    assert np.isnan(gini[0]) and gini[1] == pytest.approx(0.0)
    assert np.isnan(entropy[0]) and entropy[1] == pytest.approx(math.log(3))


def test_uniform_noise_has_gini_one_third():
    # Gini = E|X − Y| / (2 E X) = (1/3) / (2 · 1/2) for X, Y ~ U[0, 1)
    noise = np.random.default_rng(0).random((1, 100_000))
    assert functional.gini(noise)[0] == pytest.approx(1 / 3, abs=0.005)
