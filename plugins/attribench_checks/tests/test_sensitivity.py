import numpy as np
import pytest
from attribench_checks import sensitivity

# one map of 1×1×2 values [3, 4] (norm 5), and a perturbed map [3, 0] (difference [0, −4], norm 4)
MAP = np.array([[[[3.0, 4.0]]]])
PERTURBED_MAP = np.array([[[[3.0, 0.0]]]])


def test_frobenius_norm_takes_every_axis_but_the_first():
    maps = np.concatenate([MAP, 2 * MAP])
    np.testing.assert_allclose(sensitivity.frobenius(maps), [5.0, 10.0])


def test_relative_change_of_a_hand_computed_pair():
    np.testing.assert_allclose(sensitivity.relative_change(MAP, PERTURBED_MAP), [4 / 5])
    np.testing.assert_allclose(sensitivity.relative_change(MAP, MAP), [0.0])
    np.testing.assert_allclose(sensitivity.relative_change(MAP, 0 * MAP), [1.0])


def test_relative_change_of_an_all_zero_map_is_nan():
    assert np.isnan(sensitivity.relative_change(0 * MAP, MAP)).all()


def test_lipschitz_ratio_of_a_hand_computed_pair():
    inputs = np.zeros((1, 1, 1, 3))
    perturbed = np.array([[[[0.1, -0.2, 0.2]]]])  # ‖x − x'‖ = √0.09 = 0.3
    ratio = sensitivity.lipschitz_ratio(MAP, PERTURBED_MAP, inputs, perturbed)
    np.testing.assert_allclose(ratio, [4 / 0.3])
    assert np.isnan(sensitivity.lipschitz_ratio(MAP, PERTURBED_MAP, inputs, inputs)).all()


def test_max_and_mean_over_the_draws_per_sample():
    changes = np.array([[0.1, 0.5], [0.3, 0.2], [0.2, 0.2]])  # 3 draws × 2 samples
    np.testing.assert_allclose(sensitivity.max_sensitivity(changes), [0.3, 0.5])
    np.testing.assert_allclose(sensitivity.avg_sensitivity(changes), [0.2, 0.3])


def test_invariant_within_the_tolerance_nan_kept():
    verdict = sensitivity.invariant(np.array([0.0, 1e-4, 0.5, np.nan]), tolerance=1e-3)
    np.testing.assert_array_equal(verdict, [1.0, 1.0, 0.0, np.nan])


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_relative_change_does_not_depend_on_the_maps_scale(scale):
    assert sensitivity.relative_change(scale * MAP, scale * PERTURBED_MAP)[0] == pytest.approx(0.8)
