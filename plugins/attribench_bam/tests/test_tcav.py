"""TCAV on tiny models whose target logit reads the concept's channel, its opposite, or another channel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from attribench_bam import tcav
from attribench_bam.tcav import LinearSVM, permutation_p_value, tcav_score
from torch import nn

SIZE = 4
RED, GREEN = 0, 1


class _Model(nn.Module):
    """`features`: an identity 1×1 convolution (the probed layer); logits [readout(features), 0]."""

    def __init__(self, readout: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])
            self.features.bias.zero_()
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        target = self.readout(self.features(x))
        return torch.stack([target, torch.zeros_like(target)], dim=1)


def _images(n: int, seed: int, red: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Uniform random images, the red channel drawn from `red` instead."""
    images = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    images[:, RED] = red[0] + (red[1] - red[0]) * images[:, RED]
    return images


CONCEPT = _images(30, seed=1, red=(0.6, 1.0))  # the concept: red
RANDOM_SETS = [_images(30, seed=2 + i, red=(0.0, 0.4)) for i in range(2)]
INPUTS = _images(40, seed=9)


def _reads_green(features: torch.Tensor) -> torch.Tensor:
    """Ignores the concept: reads green, with a gradient whose sign varies from input to input."""
    return (features[:, GREEN] - 0.5).square().mean(dim=(1, 2))


def _score(readout: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> dict:
    return tcav_score(_Model(readout).eval(), ["features"], 0, CONCEPT, RANDOM_SETS, INPUTS, seed=seed)


def test_scores_follow_how_the_target_uses_the_concept():
    uses = _score(lambda f: f[:, RED].mean(dim=(1, 2)))["features"]
    opposes = _score(lambda f: -f[:, RED].mean(dim=(1, 2)))["features"]
    ignores = _score(_reads_green)["features"]
    assert uses["scores"] == [1.0, 1.0] and uses["mean"] == 1.0
    assert opposes["scores"] == [0.0, 0.0]
    assert 0.0 < ignores["mean"] < 1.0
    assert uses["cav_accuracies"] == [1.0, 1.0]  # red separates the concept from either random set


def test_deterministic_and_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert _score(_reads_green, seed=3) == _score(_reads_green, seed=3)
    assert not any(tmp_path.iterdir())


def test_linear_svm_separates_two_concepts_and_orders_its_rows_by_class():
    features = torch.tensor([[2.0, 0.0], [3.0, 1.0], [2.5, -1.0], [-2.0, 0.5], [-3.0, 0.0], [-2.5, -0.5]])
    labels = torch.tensor([7, 7, 7, 4, 4, 4])
    classifier = LinearSVM(test_fraction=1 / 3)
    stats = classifier.train_and_eval([(features[:3], labels[:3]), (features[3:], labels[3:])])
    assert classifier.classes() == [4, 7] and stats["accs"] == 1.0
    weights = classifier.weights()
    assert weights.shape == (2, 2) and torch.equal(weights[0], -weights[1])
    assert weights[1, 0] > 0 and weights[1, 0] > abs(weights[1, 1])  # towards class 7, along the first axis
    with pytest.raises(ValueError, match="two concepts"):
        classifier.train_and_eval([(features, torch.arange(6))])


def test_null_scores_are_a_random_set_against_the_same_random_sets():
    null = _images(30, seed=20, red=(0.0, 0.4))  # drawn like the random sets: no concept
    uses = tcav_score(
        _Model(lambda f: f[:, RED].mean(dim=(1, 2))).eval(),
        ["features"],
        0,
        CONCEPT,
        RANDOM_SETS,
        INPUTS,
        null_concept=null,
    )["features"]
    assert uses["scores"] == [1.0, 1.0] and len(uses["null_scores"]) == 2
    assert all(0.0 <= s <= 1.0 for s in uses["null_scores"])
    assert "null_scores" not in _score(_reads_green)["features"]


def test_permutation_p_value_exact_by_hand():
    # five 1s against five 0s: only the observed split and its mirror are as extreme, of C(10, 5) = 252
    assert permutation_p_value([1.0] * 5, [0.0] * 5) == pytest.approx(2 / 252)
    # 1, 1 against 0, 0: C(4, 2) = 6 splits, 2 as extreme
    assert permutation_p_value([1.0, 1.0], [0.0, 0.0]) == pytest.approx(1 / 3)
    assert permutation_p_value([0.5, 0.7, 0.6], [0.5, 0.7, 0.6]) == 1.0  # no difference: every split
    # [0.9, 0.8, 0.3] vs [0.2, 0.1, 0.3]: observed |2.0 − 0.6|/3; as extreme: {0.9, 0.8, 0.3} (either 0.3)
    # and the mirrors: 4 of C(6, 3) = 20
    assert permutation_p_value([0.9, 0.8, 0.3], [0.2, 0.1, 0.3]) == pytest.approx(4 / 20)


def test_permutation_p_value_sampled_when_there_are_too_many_splits(monkeypatch):
    monkeypatch.setattr(tcav, "EXACT_PERMUTATIONS", 10)
    sampled = permutation_p_value([1.0] * 5, [0.0] * 5, seed=1, resamples=20_000)
    assert sampled == permutation_p_value([1.0] * 5, [0.0] * 5, seed=1, resamples=20_000)
    assert abs(sampled - 2 / 252) < 0.003
    with pytest.raises(ValueError, match="at least one score"):
        permutation_p_value([], [0.0])
