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
from attribench_soco.metrics import Completeness, Deletion, Insertion, Road, Soundness
from attribench_soco.modify import SCHEMES

from attribench_core.dataset import Batch
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
    assert Completeness(noise=0.0).compute(HandContext(_maps(1.0, 0.0)), "e").value == 1.0


def test_deletion_insertion_and_road_by_area():
    # the key holds the 4 most attributed pixels: MoRF removes it at every ratio (≥ 10 pixels), LeRF never
    ctx = HandContext(_maps(1.0, 0.0))
    assert Deletion().compute(ctx, "e").curves["deletion"].y == [0.0] * 9
    assert Insertion().compute(ctx, "e").curves["insertion"].y == [1.0] * 9
    road = Road(noise=0.0).compute(ctx, "e")
    assert road.curves["morf"].y == [0.0] * 9 and road.curves["lerf"].y == [1.0] * 9
    assert road.value == 1.0
    # attribution on the patch only: MoRF removes the patch, then unattributed pixels in random order; the
    # key survives the first steps on some images, so deletion ranks this map below the key's (0)
    on_patch = Deletion().compute(HandContext(_maps(0.0, 1.0)), "e")
    assert on_patch.curves["deletion"].y[0] > 0 and on_patch.value > 0


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
