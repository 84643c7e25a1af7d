"""The synthetic linear test (paper §5.1): Shapley ground truth by hand, and the paper's findings over a few
trials: soundness ranks Ground truth = Remove above Introduce; completeness tells them apart."""

from __future__ import annotations

import numpy as np
import torch
from attribench_soco import linear


def test_shapley_ground_truth_is_the_signed_feature_clipped_at_zero():
    x = torch.tensor([[1.0, -0.5, 2.0], [-1.0, 0.5, -2.0]])
    sign, attribution = linear.ground_truth(x)
    assert sign.tolist() == [1.0, -1.0]
    assert attribution.tolist() == [[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]]


def test_the_ground_truth_is_perfectly_sound_and_the_findings_hold():
    curves = linear.run_trials(3, seed=0, samples=300)
    soundness = {v: np.mean([c.soundness.mean() for c in runs]) for v, runs in curves.items()}
    completeness = {v: np.mean([c.completeness.mean() for c in runs]) for v, runs in curves.items()}
    assert soundness["ground_truth"] > 0.99
    for scheme in ("constant", "random", "partial"):
        assert soundness[f"remove_{scheme}"] > 0.99
        assert soundness[f"introduce_{scheme}"] < soundness["ground_truth"] - 0.05
    # Remove takes attribution away: fewer features above each threshold, a smaller accuracy drop
    assert completeness["remove_constant"] < completeness["ground_truth"] < completeness["introduce_constant"]
    assert completeness["remove_random"] < completeness["ground_truth"]
