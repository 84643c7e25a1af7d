"""SoCo's metrics on a hand-built pair where the answer is known: 10×10 images, black but for a 2×2 key of
1s; the model says "key" when the key's mean is above 0.5. Noise is off, so imputation is exact: a removed
key surrounded by black becomes black, and with only key pixels kept everything becomes 1."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from attribench_soco import functional, validation
from attribench_soco.metrics import (
    Completeness,
    Deletion,
    DeletionAccuracy,
    Evaluated,
    Insertion,
    InsertionAccuracy,
    Road,
    Soundness,
)
from attribench_soco.modify import SCHEMES
from attribench_soco.sweeps import Outcomes

from attribench_core.dataset import Batch
from attribench_core.result import wilson_ci
from attribench_core.store import Stored

SIDE = 10
KEY = (slice(2, 4), slice(2, 4))
PATCH = (slice(7, 9), slice(7, 9))  # far from the key: its imputation never reaches it


class KeyModel(torch.nn.Module):
    """Logits (0.5 − m, m − 0.5) where m is the mean of the key: class 1 iff m > 0.5."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = images[:, :, KEY[0], KEY[1]].mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1)


class HandContext:
    """A MetricContext over `n` copies of the key image (label 1) with the given attribution maps."""

    def __init__(self, maps: np.ndarray) -> None:
        self.maps = maps
        self.index = np.arange(len(maps))
        self.seed, self.device, self.batch_size = 0, "cpu", 2
        self.model_name = "hand"

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(0)

    def load_model(self, name: str) -> torch.nn.Module:
        return KeyModel()

    @property
    def dataset(self) -> HandContext:
        return self  # `batch` below: the key images

    def batch(self, part: np.ndarray) -> Batch:
        images = torch.zeros(len(part), 3, SIDE, SIDE)
        images[:, :, KEY[0], KEY[1]] = 1.0
        labels = torch.ones(len(part), dtype=torch.long)
        return Batch(part, images, labels, {}, [{}] * len(part), [{}] * len(part))

    def stored_batches(self, explainer: str, **_: Any):
        for start in range(0, len(self.index), self.batch_size):
            part = self.index[start : start + self.batch_size]
            nonfinite = ~np.isfinite(self.maps[part]).all(axis=(1, 2, 3))
            yield Stored(part, self.maps[part], part * 0 + 1, part * 0 + 1, nonfinite)

    def map(self, work: Callable[[Any, Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return (work(self, item) for item in items)


def _maps(key: float, patch: float, n: int = 3) -> np.ndarray:
    maps = np.zeros((n, 1, SIDE, SIDE), np.float32)
    maps[:, 0, KEY[0], KEY[1]] = key
    maps[:, 0, PATCH[0], PATCH[1]] = patch
    return maps


def test_soundness_flags_what_was_added_after_the_key_sufficed():
    # step 1 keeps 2 key pixels: everything is imputed to 1, the image is right (not judged: the first
    # rise). Steps 2-3 add the other key pixels (1 each), steps 4-7 the patch (0.5 each): accuracy stays 1,
    # so all of it is false attribution.
    on_key = Soundness(noise=0.0).compute(HandContext(_maps(1.0, 0.0)), "e")
    with_patch = Soundness(noise=0.0).compute(HandContext(_maps(1.0, 0.5)), "e")
    expected_key = [1.0, 2 / 3] + [0.5] * 94
    expected_patch = [1.0, 2 / 3, 0.5, 2 / 4.5, 2 / 5, 2 / 5.5] + [2 / 6] * 90
    np.testing.assert_allclose(on_key.curves["soundness"].y, expected_key)
    np.testing.assert_allclose(with_patch.curves["soundness"].y, expected_patch)
    assert on_key.curves["accuracy"].y == [1.0] * 96
    assert on_key.value == pytest.approx(np.mean(expected_key))
    assert with_patch.value == pytest.approx(np.mean(expected_patch)) and with_patch.value < on_key.value
    assert on_key.curves["soundness"].x[0] == 0.02 and len(on_key.curves["soundness"].x) == 96
    assert on_key.n == 3 and on_key.uncertainty.low == pytest.approx(on_key.value)


def test_completeness_is_the_share_of_thresholds_that_remove_the_key():
    # key at 0.5, patch at 1: thresholds 0.9 … 0.5 remove only the patch (strictly above t), 0.4 … 0.1 the
    # key too, which is then imputed black from its black neighbours: the accuracy drops by 1 at 4 of 9.
    result = Completeness(noise=0.0).compute(HandContext(_maps(0.5, 1.0)), "e")
    assert result.curves["completeness"].y == [0.0] * 5 + [1.0] * 4
    assert result.value == pytest.approx(4 / 9)
    np.testing.assert_allclose(result.curves["removed"].y, [0.04] * 5 + [0.08] * 4)
    assert result.values["accuracy"] == 1.0
    wilson = wilson_ci(3, 3)  # the accuracy is a rate: Wilson's interval, not a point at 3/3
    assert (result.values["accuracy_low"], result.values["accuracy_high"]) == (wilson.low, wilson.high)
    assert result.values["accuracy_low"] < 1.0
    assert Completeness(noise=0.0).compute(HandContext(_maps(1.0, 0.0)), "e").value == 1.0


def test_accuracy_deletion_insertion_and_road_by_area():
    # the key holds the 4 most attributed pixels: MoRF removes it at every ratio (≥ 10 pixels), LeRF never
    ctx = HandContext(_maps(1.0, 0.0))
    assert DeletionAccuracy().compute(ctx, "e").curves["deletion_accuracy"].y == [0.0] * 9
    assert InsertionAccuracy().compute(ctx, "e").curves["insertion_accuracy"].y == [1.0] * 9
    road = Road(noise=0.0).compute(ctx, "e")
    assert road.curves["morf"].y == [0.0] * 9 and road.curves["lerf"].y == [1.0] * 9
    assert road.value == 1.0
    # attribution on the patch only: MoRF removes the patch, then unattributed pixels in random order; the
    # key survives the first steps on some images, so deletion ranks this map below the key's (0)
    on_patch = DeletionAccuracy().compute(HandContext(_maps(0.0, 1.0)), "e")
    assert on_patch.curves["deletion_accuracy"].y[0] > 0 and on_patch.value > 0


def sigmoid(x: float) -> float:
    return 1 / (1 + np.exp(-x))


def test_petsiuk_deletion_by_hand():
    # 4 steps of ⌈100/4⌉ = 25 pixels: 0, 25, 50, 75, 100 deleted. The key (the top 4) goes in the first step.
    # KeyModel's class-1 probability is σ(2m − 1), m the key's mean: σ(1) intact, then σ(−1) with 0 fill,
    # σ(2·0.04 − 1) with the image's mean colour (4 white pixels of 100) as fill
    ctx = HandContext(_maps(1.0, 0.0))
    result = Deletion(steps=4).compute(ctx, "e")
    expected = [sigmoid(1)] + [sigmoid(-1)] * 4
    np.testing.assert_allclose(result.curves["deletion"].y, expected)
    assert result.curves["deletion"].x == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.value == pytest.approx((sigmoid(1) / 2 + 3.5 * sigmoid(-1)) / 4)  # trapezoids over 4
    mean_fill = Deletion(steps=4, fill="mean").compute(ctx, "e").curves["deletion"].y
    np.testing.assert_allclose(mean_fill, [sigmoid(1)] + [sigmoid(2 * 0.04 - 1)] * 4)


def test_petsiuk_insertion_starts_from_rises_blurred_canvas_by_hand():
    # nothing inserted: the whole image is RISE's blur; the key's pixel (r, c) there is the sum of the kernel
    # over the key's offsets (the kernel is symmetric). Inserting the top 25 restores the key: σ(1).
    kernel = functional.rise_kernel()
    key = [(r, c) for r in (2, 3) for c in (2, 3)]
    blurred = np.mean([sum(kernel[5 + r2 - r, 5 + c2 - c] for r2, c2 in key) for r, c in key])
    result = Insertion(steps=4).compute(HandContext(_maps(1.0, 0.0)), "e")
    expected = [sigmoid(2 * blurred - 1)] + [sigmoid(1)] * 4
    np.testing.assert_allclose(result.curves["insertion"].y, expected, rtol=1e-6)
    assert result.value == pytest.approx((expected[0] / 2 + 3.5 * sigmoid(1)) / 4, rel=1e-6)
    assert result.curves["insertion"].x_name == "fraction of pixels inserted"
    zero = Insertion(steps=4, fill="zero").compute(HandContext(_maps(1.0, 0.0)), "e")
    np.testing.assert_allclose(zero.curves["insertion"].y, [sigmoid(-1)] + [sigmoid(1)] * 4, rtol=1e-6)


def _evaluated(correct: np.ndarray) -> Evaluated:
    """A soundness sweep's outcomes without a model: `correct[T, N]`, every image adding 1 attribution per
    step (kept = t + 1), so each image's soundness depends on the dataset's step decisions only."""
    steps, n = correct.shape
    kept = np.repeat(np.arange(1.0, steps + 1)[:, None], n, axis=1)
    accounting = functional.SoundnessAccounting(kept, np.ones_like(kept))
    zeros = np.zeros(correct.shape)
    return Evaluated(Outcomes(correct, zeros, zeros), np.arange(n), [accounting], {})


def _soundness_value(false: set[int], steps: int = 96) -> float:
    """The mean soundness over the steps when the steps in `false` were judged false (kept = t + 1)."""
    accumulated = np.cumsum([t in false for t in range(steps)])
    return float(np.mean([(t + 1 - accumulated[t]) / (t + 1) for t in range(steps)]))


def test_soundness_judges_a_one_image_rise_real_at_every_accuracy_level():
    # 100 images, 10 + t correct at step t (a rise of exactly one image per step up to 100 at t = 90, then
    # none): no rise is below ε·N = 1, so only the last 5 steps are false. On float accuracies the rises
    # into 11, 12, 15, 18, 21, 24, 29, 35, 41, 47, 57, 69, 82, 94 correct were judged false as well.
    steps = len(functional.SOUNDNESS_RATIOS)
    counts = np.minimum(10 + np.arange(steps), 100)
    correct = np.arange(100)[None, :] < counts[:, None]
    result = Soundness().score(HandContext(_maps(1.0, 0.0)), "e", _evaluated(correct))
    assert result.values["false_steps"] == 5
    assert result.value == pytest.approx(_soundness_value(set(range(91, 96))))
    assert result.curves["accuracy"].y == (counts / 100).tolist()


def test_soundness_interval_takes_the_step_decisions_again_on_each_resample():
    # 100 images, 50 correct at step 0 and 51 (image 50 too) from step 1 on: step 1's rise of one image is
    # real (1 ≥ ε·N) when image 50 is in the resample, false when it is not (probability 0.99^100 ≈ 0.37);
    # later steps do not rise (false). Every image has the same soundness, so holding the decisions fixed
    # gives the point [value, value]; redone per resample the interval spans both outcomes.
    steps = len(functional.SOUNDNESS_RATIOS)
    correct = np.zeros((steps, 100), bool)
    correct[:, :50] = True
    correct[1:, 50] = True
    result = Soundness().score(HandContext(_maps(1.0, 0.0)), "e", _evaluated(correct))
    real, false = _soundness_value(set(range(2, steps))), _soundness_value(set(range(1, steps)))
    assert result.value == pytest.approx(real)
    assert result.uncertainty.kind == "bootstrap_ci95"
    assert result.uncertainty.low == pytest.approx(false) and result.uncertainty.high == pytest.approx(real)


def test_nonfinite_attributions_are_skipped_with_a_reason():
    maps = _maps(1.0, 0.0)
    maps[1, 0, 0, 0] = np.nan
    result = Completeness(noise=0.0).compute(HandContext(maps), "e")
    assert result.n == 2 and result.skipped == {"non-finite attribution": 1}


def test_the_same_seed_gives_the_same_numbers_with_noise():
    ctx = HandContext(_maps(0.7, 1.0))
    assert (
        Soundness().compute(ctx, "e").curves["soundness"].y
        == Soundness().compute(ctx, "e").curves["soundness"].y
    )


def _validate(maps: np.ndarray):
    """Validate on one batch of the hand-built pair (its sweeps run 7 times per metric)."""
    ctx = HandContext(maps)
    ctx.batch_size = len(maps)
    return validation.Validate(noise=0.0).compute(ctx, "e")


def test_validate_reports_the_minimal_distances_between_the_curves_it_returns():
    result = _validate(_maps(1.0, 0.5, n=2))
    # Table 1's Deletion is SoCo's accuracy sweep (0.1 … 0.9 removed), not Petsiuk et al.'s game
    assert result.curves["deletion_original"].x == list(functional.AREA_RATIOS)
    for name in validation.COMPARED:
        per_scheme = [
            functional.minimal_hausdorff(
                [
                    np.column_stack([c.x, np.array(c.y, dtype=float)])
                    for c in (result.curves[f"{name}_{version}"] for version in versions)
                ]
            )
            for versions in [("original", f"remove_{s}", f"introduce_{s}") for s in SCHEMES]
        ]
        assert result.values[f"hausdorff_{name}"] == pytest.approx(np.mean(per_scheme))
        assert result.values[f"hausdorff_{name}_std"] == pytest.approx(np.std(per_scheme))
    distance = {name: result.values[f"hausdorff_{name}"] for name in validation.COMPARED}
    separated, overlapping = ("completeness", "soundness"), ("road", "deletion")
    expected = min(distance[k] for k in separated) - max(distance[k] for k in overlapping)
    assert result.value == pytest.approx(expected) and result.n == 2


def test_validate_finds_no_distance_when_the_modification_changes_nothing(monkeypatch):
    monkeypatch.setattr(validation, "_modified", lambda mode, scheme, maps, generator: maps)
    result = _validate(_maps(1.0, 0.5, n=2))
    assert all(result.values[f"hausdorff_{name}"] == 0.0 for name in validation.COMPARED)
    assert result.value == 0.0
