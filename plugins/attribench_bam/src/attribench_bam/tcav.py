"""TCAV (Kim et al. 2018) with Captum's `captum.concept`, as BAM uses it (research notes §3.8): the share of
inputs whose target logit increases along the concept's activation vector (CAV), per layer, for the
concept against each random set.

Captum's `DefaultClassifier` trains with scikit-learn (`SkLearnSGDClassifier`), which is not a
dependency, and shuffles its split with the unseeded `random` module. `LinearSVM` replaces it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from itertools import combinations
from math import ceil, comb

import numpy as np
import torch
from captum.concept import TCAV, Classifier, Concept
from torch import nn

CAV_ALPHA = 0.1
TEST_FRACTION = 0.33
MIN_CONCEPT_SIZE = ceil(1 / TEST_FRACTION)  # the fewest images per set that hold one out
BATCH_SIZE = 64
EXACT_PERMUTATIONS = 200_000  # up to this many splits the permutation test enumerates them all
SIGNIFICANCE = 0.05


class LinearSVM(Classifier):
    """A linear SVM for CAVs: the objective of scikit-learn's `SGDClassifier(loss="squared_hinge",
    alpha=0.1)`, mean max(0, 1 − y(w·a + b))² + α/2 ‖w‖² with y = ±1 and an unpenalised intercept.

    The tcav library (BAM's) trains `SGDClassifier(alpha=0.1)` with the plain hinge loss by stochastic
    gradient descent, stopping wherever the run ends. The squared hinge keeps the SVM's margin but is
    smooth, so L-BFGS reaches the unique optimum: the CAV does not depend on a sample order or a stopping
    rule. Trained on a stratified split drawn with `seed`, accuracy on the held-out `test_fraction` (0.33
    as tcav); the only randomness is that split.
    """

    def __init__(
        self, *, alpha: float = CAV_ALPHA, test_fraction: float = TEST_FRACTION, seed: int = 0
    ) -> None:
        self.alpha, self.test_fraction, self.seed = alpha, test_fraction, seed
        self._weights: torch.Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(
        self, dataloader: Iterable[tuple[torch.Tensor, torch.Tensor]], **kwargs: object
    ) -> dict[str, torch.Tensor]:
        activations, labels = (torch.cat(part) for part in zip(*dataloader, strict=True))
        classes = labels.unique(sorted=True)
        if len(classes) != 2:
            raise ValueError(f"A CAV separates two concepts; got labels {classes.tolist()}.")
        features = activations.detach().to(torch.float64)
        signs = torch.where(labels == classes[1], 1.0, -1.0).to(features)
        train = self._split(labels)
        w, b = self._fit(features[train], signs[train])
        correct = torch.sign(features[~train] @ w + b) == signs[~train]
        self._weights = torch.stack([-w, w]).to(activations.dtype)  # a row per class, as captum's default
        self._classes = classes.tolist()
        return {"accs": correct.to(torch.float64).mean()}

    def _split(self, labels: torch.Tensor) -> torch.Tensor:
        """Bool `[N]`, True for training: per class, a seeded shuffle leaves `test_fraction` out."""
        generator = torch.Generator().manual_seed(self.seed)
        train = torch.ones(len(labels), dtype=torch.bool)
        for label in labels.unique(sorted=True):
            members = (labels == label).nonzero()[:, 0].cpu()
            shuffled = members[torch.randperm(len(members), generator=generator)]
            train[shuffled[: int(self.test_fraction * len(members))]] = False
        return train.to(labels.device)

    def _fit(self, features: torch.Tensor, signs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w `[F]`, b) minimising the objective, by L-BFGS from zero (float64)."""
        parameters = features.new_zeros(features.shape[1] + 1, requires_grad=True)
        optimiser = torch.optim.LBFGS(
            [parameters],
            max_iter=500,
            tolerance_grad=1e-10,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def objective() -> torch.Tensor:
            optimiser.zero_grad()
            w, b = parameters[:-1], parameters[-1]
            margins = signs * (features @ w + b)
            loss = torch.relu(1 - margins).square().mean() + self.alpha / 2 * w.dot(w)
            loss.backward()
            return loss

        optimiser.step(objective)
        return parameters[:-1].detach(), parameters[-1].detach()

    def weights(self) -> torch.Tensor:
        if self._weights is None:
            raise RuntimeError("Train the classifier first (train_and_eval).")
        return self._weights

    def classes(self) -> list[int]:
        return self._classes


def tcav_score(
    model: nn.Module,
    layers: list[str],
    target: int,
    concept_images: torch.Tensor,
    random_sets: list[torch.Tensor],
    inputs: torch.Tensor,
    *,
    null_concept: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float | list[float]]]:
    """Per layer name of `model` (in eval mode): the TCAV score of the concept against each of
    `random_sets` (`scores`, the fraction of `inputs` whose `target` logit has a positive directional
    derivative along the CAV, captum's `sign_count`), their mean (`mean`) and the CAVs' held-out
    accuracies (`cav_accuracies`). Given `null_concept` (one more random set), also the scores of that
    random set against each of `random_sets` (`null_scores`): Kim et al.'s (2018, §3.2) reference
    distribution for the statistical test (`permutation_p_value`).

    BAM's concept is dogs in scenes, its random sets scene_only images, its inputs dog_bedroom with
    the dog (obj model) or bedroom (scene model) logit as target; its TCAV contrast is the obj model's
    score minus the scene model's. The derivative is the target logit's (captum's), where the tcav
    library differentiates the class's cross-entropy, i.e. its log-softmax. All tensors on the model's
    device. Captum caches activations and CAVs on disk: here in a temporary directory, removed
    afterwards, so nothing is reused across calls.
    """
    concept = Concept(0, "concept", torch.split(concept_images, BATCH_SIZE))
    randoms = [Concept(i + 1, f"random{i}", torch.split(r, BATCH_SIZE)) for i, r in enumerate(random_sets)]
    experimental_sets = [[concept, random] for random in randoms]
    heads = [concept]
    if null_concept is not None:
        heads.append(Concept(len(randoms) + 1, "null", torch.split(null_concept, BATCH_SIZE)))
        experimental_sets += [[heads[1], random] for random in randoms]
    with tempfile.TemporaryDirectory(prefix="attribench-tcav-") as save_path:
        tcav = TCAV(model, layers, classifier=LinearSVM(seed=seed), save_path=save_path)
        scores = tcav.interpret(inputs, experimental_sets, target=target)
        results = {}
        for layer in layers:
            per_head = [
                [float(scores[f"{head.id}-{r.id}"][layer]["sign_count"][0]) for r in randoms]
                for head in heads
            ]
            accuracies = [float(tcav.cavs[f"0-{r.id}"][layer].stats["accs"]) for r in randoms]
            results[layer] = {
                "scores": per_head[0],
                "mean": sum(per_head[0]) / len(per_head[0]),
                "cav_accuracies": accuracies,
            }
            if null_concept is not None:
                results[layer]["null_scores"] = per_head[1]
    return results


def permutation_p_value(
    scores: Iterable[float], null_scores: Iterable[float], *, seed: int = 0, resamples: int = 10_000
) -> float:
    """Two-sided permutation test of equal means: the share of splits of the pooled values into groups of
    the two sizes whose mean difference is at least as large in absolute value as the observed one.

    Kim et al. (2018) test concept-vs-random TCAV scores against random-vs-random ones with a t-test; this
    is its distribution-free counterpart (no scipy here). Every split is enumerated when there are at most
    `EXACT_PERMUTATIONS` (10 + 10 scores: 184 756), so the p-value is exact; otherwise `resamples` random
    splits drawn with `seed`, and p = (1 + hits) / (1 + resamples).
    """
    a, b = np.asarray(list(scores), np.float64), np.asarray(list(null_scores), np.float64)
    if not len(a) or not len(b):
        raise ValueError("The permutation test needs at least one score in each group.")
    pooled, total, n = np.concatenate([a, b]), a.sum() + b.sum(), len(a)
    observed = abs(a.mean() - b.mean())

    def differences(first: np.ndarray) -> np.ndarray:
        """|mean of the chosen `first` rows − mean of the rest| per split."""
        chosen = pooled[first].sum(axis=1)
        return np.abs(chosen / n - (total - chosen) / len(b))

    tolerance = 1e-12 * max(1.0, observed)  # equal differences must count as "at least as large"
    if comb(len(pooled), n) <= EXACT_PERMUTATIONS:
        splits = np.array(list(combinations(range(len(pooled)), n)), dtype=np.int64)
        return float(np.mean(differences(splits) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    splits = np.argsort(rng.random((resamples, len(pooled))), axis=1)[:, :n]
    return float((1 + np.sum(differences(splits) >= observed - tolerance)) / (1 + resamples))
