"""A model's random-label twin: the same architecture and recipe trained on its training set with the
labels permuted (Adebayo et al. 2018, "Sanity checks for saliency maps", data randomisation test).

A metric asks for the twin's maps with `AttributionRequest(..., training=PermutedLabels())`; the twin is
trained once and cached under `ATTRIBENCH_HOME` like any model, its weights key adding the `PermutedLabels`
identity (the keys of ordinary models are unchanged), the permutation drawn from the run seed. Its check
(`twin_check`) says whether it memorised the permuted labels (training accuracy) and is at chance on the
test set; a failed check is recorded with the run, not raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from attribench_core.dataset import Batch, Dataset, Sample
from attribench_core.model import Verification
from attribench_core.recipe import Recipe
from attribench_core.seeding import derive_seed
from attribench_core.training import predict
from attribench_core.variants import Variant

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

FIT_ACCURACY = 0.9  # training accuracy on the permuted labels from which the twin has memorised them
CHANCE_SIGMAS = 3.0  # how far (in binomial standard errors) test accuracy may lie from chance
LABEL_CHUNK = 256  # labels are read this many samples at a time


@dataclass(frozen=True)
class PermutedLabels(Variant):
    """Train the model by its own recipe on its training set with the labels permuted, the permutation
    drawn from the run seed; `epochs`, when given, replaces the recipe's (memorising random labels may
    take longer than learning the real ones)."""

    epochs: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"PermutedLabels: epochs must be at least 1; got {self.epochs}.")

    def twin_name(self, name: str) -> str:
        """The twin's name in results and store keys: `core.toy_cnn:permuted_labels`."""
        return f"{name}:permuted_labels"

    def recipe(self, recipe: Recipe) -> Recipe:
        """`recipe` with this variant's epochs; one attempt (another draw would not change the labels)."""
        epochs = recipe.epochs if self.epochs is None else self.epochs
        return replace(recipe, epochs=epochs, max_attempts=1, min_accuracy=0.0)

    def permutation(self, size: int, seed: int) -> np.ndarray:
        """The permutation of `size` training labels for run seed `seed`: sample i gets sample
        `permutation[i]`'s label."""
        return np.random.default_rng(derive_seed(seed, "permuted-labels")).permutation(size)


class PermutedLabelsDataset(Dataset):
    """`base` (a training set) whose sample i carries the label of sample `permutation[i]`; images and
    regions are `base`'s own."""

    def __init__(self, base: Dataset, permutation: np.ndarray) -> None:
        if sorted(permutation.tolist()) != list(range(len(base))):
            raise ValueError("permutation must reorder every index of the dataset once")
        self.base = base
        self.labels = labels_of(base)[permutation]
        self.num_classes = base.num_classes  # type: ignore[misc]
        self.class_names = base.class_names  # type: ignore[misc]
        self.value_range = base.value_range  # type: ignore[misc]
        self.split, self.source = base.split, base.source

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.base.image_shape

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        return replace(self.base[index], label=int(self.labels[index]))

    def batch(self, index: Sequence[int] | np.ndarray) -> Batch:
        import torch

        batch = self.base.batch(index)
        return replace(batch, labels=torch.from_numpy(self.labels[np.asarray(index, dtype=np.int64)]))


def labels_of(dataset: Dataset) -> np.ndarray:
    """Every label of `dataset`, read `LABEL_CHUNK` samples at a time (images are not kept)."""
    chunks = [
        dataset.batch(np.arange(start, min(start + LABEL_CHUNK, len(dataset)))).labels.numpy()
        for start in range(0, len(dataset), LABEL_CHUNK)
    ]
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)


def chance_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """The accuracy expected of predictions independent of the labels: Σ_k P(pred = k)·P(label = k)."""
    predicted = np.bincount(predictions, minlength=num_classes) / len(predictions)
    actual = np.bincount(labels, minlength=num_classes) / len(labels)
    return float(predicted @ actual)


def twin_check(
    module: torch.nn.Module, train_set: Dataset, test_set: Dataset, *, device: str = "cpu"
) -> Verification:
    """Whether the twin memorised its permuted labels (training accuracy ≥ `FIT_ACCURACY`) and is at chance
    on the test set (test accuracy within `CHANCE_SIGMAS` binomial standard errors of `chance_accuracy`)."""
    train_predictions, train_labels = _predictions_and_labels(module, train_set, device)
    train = float((train_predictions == train_labels).mean())
    test_predictions, test_labels = _predictions_and_labels(module, test_set, device)
    test = float((test_predictions == test_labels).mean())
    chance = chance_accuracy(test_predictions, test_labels, test_set.num_classes)
    margin = CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / len(test_labels))
    fits, at_chance = train >= FIT_ACCURACY, abs(test - chance) <= margin
    return Verification(
        passed=bool(fits and at_chance),
        summary={"train_accuracy": train, "test_accuracy": test, "chance_accuracy": chance},
        message=(
            f"training accuracy on permuted labels {train:.3f} (gate {FIT_ACCURACY:.2f}), test accuracy "
            f"{test:.3f} against chance {chance:.3f} ± {margin:.3f}"
        ),
    )


def _predictions_and_labels(
    module: torch.nn.Module, dataset: Dataset, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """`module`'s predicted classes and the labels of every sample of `dataset`, `LABEL_CHUNK` at a time."""
    predictions, labels = [], []
    for start in range(0, len(dataset), LABEL_CHUNK):
        batch = dataset.batch(np.arange(start, min(start + LABEL_CHUNK, len(dataset))))
        predictions.append(predict(module, batch.images, device=device).numpy())
        labels.append(batch.labels.numpy())
    return np.concatenate(predictions), np.concatenate(labels)
