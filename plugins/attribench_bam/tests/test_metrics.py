"""BAM's Metric classes on hand-made attributions: which pairs they request, g per image, the filter on
correct classification, and each metric's value, by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from attribench_bam.metrics import IDR, IIR, MCS, MISCLASSIFIED, RMCS

from attribench_core.dataset import Batch
from attribench_core.result import Result, wilson_ci
from attribench_core.store import Stored

H = 4


def _mask(rows: slice) -> torch.Tensor:
    mask = torch.zeros(H, H, dtype=torch.bool)
    mask[rows] = True
    return mask


class HandContext:
    """A MetricContext whose attributions are given per (dataset, model): maps `[N,1,H,W]`, predictions and
    labels `[N]`, meta per image; the object is the top half of every image."""

    def __init__(self, pairs: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.pairs = pairs
        self.index = np.arange(len(next(iter(pairs.values()))["maps"]))
        self.seed, self.device, self.batch_size = 0, "cpu", 2

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(0)

    def load_dataset(self, name: str) -> DogBedrooms:
        return DogBedrooms(len(self.index))

    def load_model(self, name: str) -> torch.nn.Module:
        return SceneK(int(name.removeprefix("bam.scene")))

    def attribution_batches(self, explainer: str, *, dataset: str, model: str, index: Any = None):
        pair = self.pairs[dataset, model]
        for start in range(0, len(self.index), self.batch_size):
            part = self.index[start : start + self.batch_size]
            batch = Batch(
                index=part,
                images=torch.zeros(len(part), 3, H, H),
                labels=torch.as_tensor(pair["labels"][part]),
                regions={"object": _mask(slice(0, 2)).expand(len(part), H, H)},
                roles=[{} for _ in part],
                meta=[pair.get("meta", [{}] * len(self.index))[i] for i in part],
            )
            maps = pair["maps"][part]
            stored = Stored(part, maps, part * 0, pair["predictions"][part], np.zeros(len(part), bool))
            yield batch, stored


class DogBedrooms:
    """Images of dogs in bedrooms (label 0): all ones with the dog, all zeros without it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def batch(self, index: np.ndarray) -> Batch:
        n = len(index)
        labels = torch.zeros(n, dtype=torch.int64)
        return Batch(np.asarray(index), torch.ones(n, 3, H, H), labels, {}, [{}] * n, [{}] * n)

    def scene_only(self, index: np.ndarray) -> torch.Tensor:
        return torch.zeros(len(index), 3, H, H)


class SceneK(torch.nn.Module):
    """Model scene<k> on `DogBedrooms`: logits [(10 − k)·mean(x), 0], so p(bedroom) = sigmoid(10 − k) with
    the dog and 1/2 without it: its reliance on the dog falls as k grows."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = (10 - self.k) * x.mean(dim=(1, 2, 3))
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


def _maps(inside: list[float]) -> np.ndarray:
    """Maps whose top half (the object) holds `inside[i]` and bottom half 0, plus one pixel of 1 at the
    bottom-right so that the 99th percentile is 1 when inside ≤ 1: g = inside after normalisation."""
    maps = np.zeros((len(inside), 1, H, H), np.float32)
    for i, value in enumerate(inside):
        maps[i, 0, :2] = value
        maps[i, 0, 3, 3] = 1.0
    return maps


def _pair(inside: list[float], correct: list[bool], meta: list[dict] | None = None) -> dict[str, Any]:
    labels = np.zeros(len(inside), np.int64)
    pair = {"maps": _maps(inside), "labels": labels, "predictions": np.where(correct, 0, 1)}
    return pair | ({"meta": meta} if meta else {})


def g_of(v: float) -> float:
    """g of a `_maps` image: the 99th percentile of eight v ≤ 1, seven 0s and one 1 is 1 − 0.15·(1 − v)
    (linear interpolation at rank 14.85 of 15), so g = v / p99."""
    return v / (1 - 0.15 * (1 - v))


def test_normalised_g_of_the_hand_maps():
    ctx = HandContext({("d", "m"): _pair([0.5, 1.0], [True, True])})
    g, correct, _ = MCS().object_attribution(ctx, "e", "d", "m")
    np.testing.assert_allclose(g, [g_of(0.5), 1.0])
    assert correct.all()


def test_mcs_is_the_mean_difference_over_images_both_models_get_right():
    ctx = HandContext(
        {
            ("bam.obj", "bam.obj"): _pair([1.0, 1.0, 1.0, 1.0], [True, True, True, False]),
            ("bam.scene", "bam.scene"): _pair([1.0, 0.0, 0.0, 0.0], [True, True, False, True]),
        }
    )
    assert [(r.dataset, r.model) for r in MCS().requests(ctx)] == [
        ("bam.obj", "bam.obj"),
        ("bam.scene", "bam.scene"),
    ]
    result = MCS().compute(ctx, "e")
    # kept: images 0 and 1; differences 1 − 1 = 0 and 1 − 0 = 1
    assert result.value == pytest.approx(0.5) and result.n == 2
    assert result.skipped == {MISCLASSIFIED: 2}
    assert result.values["g_obj"] == pytest.approx(1.0) and result.values["g_scene"] == pytest.approx(0.5)
    assert Result.from_json(result.to_json("e"), result.arrays()) == result  # as the store reads it back


def test_idr_counts_strictly_higher_without_the_object():
    ctx = HandContext(
        {
            ("bam.scene_only", "bam.scene"): _pair([0.8, 0.5, 0.2, 0.9], [True, True, True, False]),
            ("bam.scene", "bam.scene"): _pair([0.4, 0.5, 0.6, 0.1], [True, True, True, True]),
        }
    )
    result = IDR().compute(ctx, "e")
    # 0.8 > 0.4 yes; 0.5 > 0.5 no (strict); 0.2 > 0.6 no; image 3 dropped
    assert result.value == pytest.approx(1 / 3) and result.n == 3 and result.skipped == {MISCLASSIFIED: 1}
    # a rate: Wilson's interval for 1 of 3, not the bootstrap's
    assert result.uncertainty == wilson_ci(1, 3)
    assert Result.from_json(result.to_json("e"), result.arrays()) == result  # as the store reads it back


def test_idr_interval_has_width_at_a_rate_of_zero():
    """The bootstrap collapsed to [0, 0] when no image counted (issue 15); Wilson's interval does not."""
    ctx = HandContext(
        {
            ("bam.scene_only", "bam.scene"): _pair([0.2] * 4, [True] * 4),
            ("bam.scene", "bam.scene"): _pair([0.6] * 4, [True] * 4),
        }
    )
    result = IDR().compute(ctx, "e")
    assert result.value == 0.0 and result.uncertainty.kind == "wilson_ci95"
    assert result.uncertainty.low == 0.0 and result.uncertainty.high == pytest.approx(0.4899, abs=1e-4)


def _iir_context() -> HandContext:
    meta = [
        {"prediction_unchanged": ok, "logit_distance": d}
        for ok, d in ((True, 0.1), (True, 0.2), (False, 3.0), (True, 0.3), (True, 1.5))
    ]
    return HandContext(
        {
            ("bam.bamboo_forest", "bam.scene_only"): _pair([1.0] * 5, [True, True, True, False, True]),
            ("bam.bamboo_forest_patch", "bam.scene_only"): _pair(
                [0.95, 0.8, 1.0, 1.0, 1.0], [True] * 5, meta
            ),
        }
    )


def test_iir_counts_small_relative_changes_over_functionally_insignificant_patches():
    result = IIR().compute(_iir_context(), "e")
    # image 0: |Δg| 0.043 < 0.1 → 1; image 1: 0.175 → 0; image 2: its patch changed the prediction;
    # image 3: misclassified; image 4: its patch moved the logits by 1.5 ≥ 1 (the default limit)
    assert result.value == pytest.approx(0.5) and result.n == 2
    assert result.skipped == {
        "patch changed the prediction": 1,
        "patch moved the logits by 1 or more": 1,
        MISCLASSIFIED: 1,
    }
    assert result.values["median_patch_logit_distance"] == pytest.approx(0.3)
    assert result.values["patches_qualifying"] == 3  # images 0, 1, 3
    assert result.uncertainty == wilson_ci(1, 2)


def test_iir_logit_distance_limit_is_an_option():
    result = IIR(max_logit_distance=float("inf")).compute(_iir_context(), "e")
    # image 4 now counts: unchanged g → 1
    assert result.value == pytest.approx(2 / 3) and result.values["patches_qualifying"] == 4
    assert result.skipped == {"patch changed the prediction": 1, MISCLASSIFIED: 1}
    strict = IIR(max_logit_distance=0.15).compute(_iir_context(), "e")
    assert strict.value == 1.0 and strict.n == 1 and strict.values["patches_qualifying"] == 1


def test_rmcs_contrasts_each_scene_model_with_scene10():
    inside = [[1.0 - 0.1 * k] * 3 for k in range(10)]  # model scene<k+1> gives g = 1 − 0.1·k on every image
    pairs = {("bam.dog_bedroom", f"bam.scene{k + 1}"): _pair(inside[k], [True] * 3) for k in range(10)}
    pairs["bam.dog_bedroom", "bam.scene4"] = _pair(inside[3], [True, True, False])
    result = RMCS().compute(HandContext(pairs), "e")
    expected = [g_of(1.0 - 0.1 * i) - g_of(0.1) for i in range(9)]  # g(scene_i) − g(scene10), i = 1..9
    assert [result.values[f"rmcs_{i}"] for i in range(1, 10)] == pytest.approx(expected)
    assert result.values["decreasing"] == 1.0 and result.values["positive_share"] == 1.0
    # the functional check: scene<k>'s bedroom probability drops by sigmoid(10 − k) − 1/2 without the dog
    reliance = [result.values[f"dog_reliance_{k}"] for k in range(1, 11)]
    assert reliance == pytest.approx([1 / (1 + math.exp(k - 10)) - 0.5 for k in range(1, 11)])
    assert result.values["reliance_decreasing"] == 1.0
    assert result.values["reliance_1_minus_10"] == pytest.approx(reliance[0])  # scene10: sigmoid(0) − 1/2 = 0
    # headline: images 0 and 1 (image 2 is wrong for scene4), per image the mean of the nine contrasts
    assert result.value == pytest.approx(np.mean(expected)) and result.n == 2
