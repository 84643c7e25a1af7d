"""TCAV on tiny models whose target logit reads the concept's channel, its opposite, or another channel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from attribench_bam.tcav import LinearSVM, tcav_score
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
