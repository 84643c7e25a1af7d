"""Intervals against hand computations: Wilson's score interval, the bootstrap of a statistic (plain and
stratified), rates in `mean_result`, and the small-n flag."""

import json
import math

import numpy as np
import pytest

from attribench_core.result import (
    SMALL_N,
    Result,
    bootstrap_interval,
    mean_of_rates_ci,
    mean_result,
    wilson_ci,
)


def _wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.mark.parametrize(("k", "n"), [(32, 32), (0, 32), (7, 20), (1, 1)])
def test_wilson_interval_matches_the_formula_and_has_width_at_the_ends(k, n):
    u = wilson_ci(k, n)
    assert u.kind == "wilson_ci95"
    assert (u.low, u.high) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)
    assert u.high - u.low > 0.05


def test_wilson_interval_of_a_perfect_pointing_game_is_not_a_point():
    """32/32 hits: the percentile bootstrap gives [1, 1]; Wilson gives [0.893, 1]."""
    u = wilson_ci(32, 32)
    assert u.low == pytest.approx(0.8928, abs=1e-4) and u.high == 1.0


def test_rates_get_wilson_and_other_scores_refuse_it():
    rng = np.random.default_rng(0)
    hits = np.ones(32)
    result = mean_result("pointing_game", hits, np.arange(32), rng, rate=True)
    assert result.uncertainty.kind == "wilson_ci95" and result.uncertainty.low < 0.9
    assert mean_result("x", hits, np.arange(32), rng).uncertainty.low == 1.0  # the bootstrap collapses
    with pytest.raises(ValueError, match="0 or 1"):
        mean_result("x", np.array([0.5, 1.0]), np.arange(2), rng, rate=True)


def test_bootstrap_interval_recomputes_the_statistic_on_each_resample():
    """The minimum over two buckets: bucket a is always 1, bucket b is 0 or 10 (two samples). Within-bucket
    resamples of b have mean 0, 5 or 10 with chances 1/4, 1/2, 1/4, so the minimum is 0, 1 or 1."""
    values = np.array([1.0, 1.0, 0.0, 10.0])
    strata = np.array(["a", "a", "b", "b"])

    def minimum_of_bucket_means(index: np.ndarray) -> float:
        return min(values[index][strata[index] == s].mean() for s in ("a", "b"))

    u = bootstrap_interval(minimum_of_bucket_means, strata, np.random.default_rng(0), resamples=2000)
    assert u.kind == "stratified_bootstrap_ci95"
    assert (u.low, u.high) == (0.0, 1.0)


def test_stratified_resamples_keep_every_stratum_at_its_size():
    strata = np.array([0] * 3 + [1] * 5)
    seen = []
    bootstrap_interval(lambda i: seen.append(np.bincount(strata[i])) or 0.0, strata, np.random.default_rng(1))
    assert all((counts == [3, 5]).all() for counts in seen)


def test_plain_bootstrap_interval_of_the_mean_agrees_with_bootstrap_ci():
    values = np.random.default_rng(2).normal(size=50)
    u = bootstrap_interval(lambda i: values[i].mean(), np.zeros(50), np.random.default_rng(3))
    assert u.kind == "bootstrap_ci95"
    assert u.low < values.mean() < u.high
    assert u.high - u.low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(50), rel=0.2)


def test_small_n_is_flagged_in_json():
    assert Result(value=0.5, n=SMALL_N - 1).to_json("e")["small_n"] is True
    assert Result(value=0.5, n=SMALL_N).to_json("e")["small_n"] is False


def test_mean_of_rates_combines_wilson_intervals_by_mover():
    """Two categories, 8/8 and 2/4: m = 0.75; Wilson (8/8) = [0.6756, 1], (2/4) = [0.1500, 0.8500];
    low = 0.75 − √((0.3244/2)² + (0.35/2)²), high = 0.75 + √(0 + (0.35/2)²)."""
    u = mean_of_rates_ci(np.array([8, 2]), np.array([8, 4]))
    w8, w2 = _wilson_by_hand(8, 8), _wilson_by_hand(2, 4)
    low = 0.75 - math.sqrt(((1 - w8[0]) / 2) ** 2 + ((0.5 - w2[0]) / 2) ** 2)
    high = 0.75 + math.sqrt(((w8[1] - 1) / 2) ** 2 + ((w2[1] - 0.5) / 2) ** 2)
    assert u.kind == "mover_wilson_ci95" and (u.low, u.high) == pytest.approx((low, high), abs=1e-12)
    single = mean_of_rates_ci(np.array([7]), np.array([20]))
    assert (single.low, single.high) == pytest.approx(_wilson_by_hand(7, 20), abs=1e-12)
    perfect = mean_of_rates_ci(np.array([8, 8]), np.array([8, 8]))
    assert perfect.high == 1.0 and perfect.low < 0.9


def test_an_interval_without_finite_bounds_is_null_in_json():
    """No finite sample: the bootstrap's bounds are NaN, which JSON cannot hold; `--json` prints null."""
    result = mean_result("x", np.array([np.nan, np.nan]), np.arange(2), np.random.default_rng(0))
    payload = result.to_json("e")
    assert payload["value"] is None and payload["uncertainty"]["low"] is None
    assert "NaN" not in json.dumps(payload)
