"""SMERF's Metric classes: options pick settings and models; scores and aggregation on hand-made cases."""

from collections import Counter

import numpy as np
import pytest
import torch
from attribench_smerf.metrics import AFL, IOU, MAFL

from attribench_core.errors import ParameterError
from attribench_core.result import Result


def test_setting_option_picks_settings_datasets_and_models():
    metric = AFL(setting="complex", variant="pgd")
    assert metric.settings == ("complex_fr", "complex_cr1", "complex_cr2", "complex_cr3", "complex_cr4")
    assert (metric.dataset, metric.model) == ("smerf.complex_fr", "smerf.complex_fr_pgd")
    assert AFL().model == "smerf.simple_fr"
    assert AFL(preset="tiny", background="noise").dataset_options() == {
        "preset": "tiny",
        "background": "noise",
    }
    with pytest.raises(ParameterError, match="must be one of"):
        AFL(setting="simple_xx")


def _batch():
    """One 4x4 image: box1 (primary) is the top-left 2x2, text (secondary) the bottom-right pixel."""
    box1 = torch.zeros(1, 4, 4, dtype=torch.bool)
    box1[0, :2, :2] = True
    text = torch.zeros(1, 4, 4, dtype=torch.bool)
    text[0, 3, 3] = True
    regions = {"box1": box1, "box2": torch.zeros_like(box1), "text": text}
    return regions, [{"primary": ("box1",), "secondary": ("text",)}]


def test_afl_and_mafl_score_the_role_masks_by_hand():
    maps = torch.full((1, 4, 4), 0.0)
    maps[0, :2, :2] = 1.0  # mass 4 on box1
    maps[0, 3, 3] = 0.5  # mass 0.5 on text, background 0: after min-max the total is 4.5
    pafl, safl = AFL(blur=0).score(maps, _batch())
    assert pafl.item() == pytest.approx(4 / 4.5) and safl.item() == pytest.approx(0.5 / 4.5)
    pmafl, smafl = MAFL(blur=0).score(maps, _batch())
    assert pmafl.item() == pytest.approx(1 / 4.5) and smafl.item() == pytest.approx(0.5 / 4.5)


def test_iou_by_hand():
    maps = torch.zeros(1, 4, 4)
    maps[0, :2, :2] = 1.0
    piou, siou = IOU(blur=0).score(maps, _batch())  # top-4 pixels are exactly box1
    assert piou.item() == 1.0 and siou.item() == 0.0


def test_aggregation_gives_the_papers_summaries():
    # two settings, two buckets each, two images per bucket
    primary = np.array([0.8, 0.6, 0.2, 0.4, 0.9, 0.7, np.nan, np.nan])
    secondary = np.array([0.1, 0.1, 0.5, 0.7, 0.05, 0.05, 0.3, 0.3])
    buckets = np.array([7, 7, 10, 10, 7, 7, 1, 1])
    settings = ["simple_fr"] * 4 + ["simple_nr"] * 4
    skipped = Counter({"no primary object (pafl undefined)": 2})  # counted by `compute`
    result = AFL().aggregate(primary, secondary, buckets, settings, np.arange(8), skipped,
                             np.random.default_rng(0))  # fmt: skip
    v = result.values
    # bucket means of PAFL: simple_fr 7 -> 0.7, 10 -> 0.3; simple_nr 7 -> 0.8 (bucket 1 undefined)
    assert result.value == pytest.approx((0.7 + 0.3 + 0.8) / 3)
    assert v["pafl_simple_fr"] == pytest.approx(0.5) and v["pafl_simple_fr_min"] == pytest.approx(0.3)
    buckets = {(r["setting"], r["bucket"]): r for r in result.tables["buckets"].records()}
    assert list(buckets) == [("simple_fr", 7), ("simple_fr", 10), ("simple_nr", 1), ("simple_nr", 7)]
    assert (buckets["simple_fr", 10]["pafl"], buckets["simple_fr", 10]["safl"]) == pytest.approx((0.3, 0.6))
    assert np.isnan(buckets["simple_nr", 1]["pafl"]) and buckets["simple_nr", 1]["safl"] == pytest.approx(0.3)
    assert [r["n"] for r in buckets.values()] == [2, 2, 0, 2]
    assert Result.from_json(result.to_json("e"), result.arrays()) == result  # as the store reads it back
    assert v["pafl_simple_mean"] == pytest.approx(0.6) and v["pafl_simple_min"] == pytest.approx(0.3)
    assert v["pafl_min"] == pytest.approx(0.3)
    assert v["success_simple_fr"] == pytest.approx(0.5)  # bucket 7 above 0.5, bucket 10 not
    assert v["wrong_focus_failures_simple_fr"] == 1.0  # bucket 10: SAFL 0.6 > PAFL 0.3
    assert v["wrong_focus_share_simple_fr"] == pytest.approx(0.5)
    assert result.n == 6 and result.skipped == {"no primary object (pafl undefined)": 2}


def test_aggregation_intervals_resample_images_within_buckets():
    """Each bucket's resampled mean moves by -0.1, 0 or +0.1 (probabilities 1/4, 1/2, 1/4): bucket 10
    (0.2, 0.4) stays below the others (0.6 at least), so the minimum over buckets is bucket 10's resampled
    mean, exactly 0.2 to 0.4; the mean over buckets stays within 0.6 ± 0.1, where a bootstrap of the six
    pooled images (the old interval) mixes the buckets and reaches further."""
    primary = np.array([0.8, 0.6, 0.2, 0.4, 0.9, 0.7, np.nan, np.nan])
    secondary = np.array([0.1, 0.1, 0.5, 0.7, 0.05, 0.05, 0.3, 0.3])
    buckets = np.array([7, 7, 10, 10, 7, 7, 1, 1])
    settings = ["simple_fr"] * 4 + ["simple_nr"] * 4
    result = AFL().aggregate(primary, secondary, buckets, settings, np.arange(8), Counter(),
                             np.random.default_rng(0))  # fmt: skip
    v, ci = result.values, result.uncertainty
    assert ci.kind == "stratified_bootstrap_ci95" and 0.5 <= ci.low < result.value < ci.high <= 0.7
    assert (v["pafl_min_low"], v["pafl_min_high"]) == pytest.approx((0.2, 0.4))
    assert (v["pafl_simple_min_low"], v["pafl_simple_min_high"]) == pytest.approx((0.2, 0.4))
    assert 0.5 <= v["pafl_simple_mean_low"] < v["pafl_simple_mean_high"] <= 0.7
    # success (PAFL > 0.5) and wrong focus (SAFL > PAFL) in simple_fr: 1 of 2 buckets, Wilson's interval
    z = 1.959963984540054
    half = z / (1 + z * z / 2) * np.sqrt(1 / 8 + z * z / 16)
    assert (v["success_simple_fr_low"], v["success_simple_fr_high"]) == pytest.approx(
        (0.5 - half, 0.5 + half)
    )
    assert (v["wrong_focus_share_simple_fr_low"], v["wrong_focus_share_simple_fr_high"]) == pytest.approx(
        (0.5 - half, 0.5 + half)
    )
