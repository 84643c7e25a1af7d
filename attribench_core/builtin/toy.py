"""`core.toy` and `core.toy_cnn`: a dataset whose ground truth is known by construction, and a tiny CNN.

Each 3x32x32 image (values in [0,1]) has a dim noise background, a coloured 8x8 square (the `object`) in
one quadrant and a grey 8x8 square (the `distractor`) in another. The label is the object's colour (red,
green, blue, yellow); the distractor looks the same in every class. A model that solves the task must use
the object: it is the primary region, the distractor the secondary one.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from torch import nn

from attribench_core.cache import cached_arrays
from attribench_core.dataset import ArrayDataset
from attribench_core.identity import short_hash
from attribench_core.model import Model, Recipe
from attribench_core.seeding import derive_seed

SIDE, SQUARE = 32, 8
SIZES = {"train": 2000, "test": 512}
ROLES = {"primary": ("object",), "secondary": ("distractor",)}


class ToyDataset(ArrayDataset):
    num_classes = 4
    class_names = ("red", "green", "blue", "yellow")
    source = "core.toy: generated 32×32 images, a test fixture rather than a benchmark"


COLOURS = np.array([[0.9, 0.15, 0.15], [0.15, 0.9, 0.15], [0.15, 0.15, 0.9], [0.9, 0.9, 0.15]], np.float32)
GREY = np.float32(0.6)


def _squares(rng: np.random.Generator, quadrant: np.ndarray) -> np.ndarray:
    """Boolean masks `[N,SIDE,SIDE]` of one square placed at random inside each sample's quadrant."""
    half = SIDE // 2
    top = (quadrant // 2) * half + rng.integers(0, half - SQUARE + 1, len(quadrant))
    left = (quadrant % 2) * half + rng.integers(0, half - SQUARE + 1, len(quadrant))
    rows = np.arange(SIDE)[None, :, None]
    cols = np.arange(SIDE)[None, None, :]
    return (
        (rows >= top[:, None, None])
        & (rows < top[:, None, None] + SQUARE)
        & (cols >= left[:, None, None])
        & (cols < left[:, None, None] + SQUARE)
    )


def generate(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, n)
    quadrant = rng.integers(0, 4, n)
    other = (quadrant + rng.integers(1, 4, n)) % 4
    obj, distractor = _squares(rng, quadrant), _squares(rng, other)
    images = rng.uniform(0.0, 0.3, (n, 3, SIDE, SIDE)).astype(np.float32)
    images = np.where(obj[:, None], COLOURS[label][:, :, None, None], images)
    images = np.where(distractor[:, None], GREY, images)
    return {"images": images, "labels": label, "object": obj, "distractor": distractor}


def make_toy(split: str = "test", seed: int = 0, size: int | None = None) -> ToyDataset:
    """The toy dataset for `split` ("train" or "test"), deterministic in (split, seed, size)."""
    n = size or SIZES[split]
    key = short_hash({"split": split, "seed": seed, "n": n, "version": 2})
    arrays = cached_arrays(
        f"datasets/core.toy/{key}.npz", lambda: generate(n, derive_seed(seed, "core.toy", split))
    )
    return ToyDataset(
        arrays["images"],
        arrays["labels"],
        {"object": arrays["object"], "distractor": arrays["distractor"]},
        ROLES,
        split=split,
    )


class ToyCNN(Model):
    """conv(8)-relu-pool-conv(16)-relu-global average pool-linear, trained in seconds."""

    dataset = "core.toy"
    recipe = Recipe(epochs=4, batch_size=64, lr=3e-3, min_accuracy=0.9, max_attempts=2)
    cam_layer = "features.3"

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        channels = image_shape[0]
        features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        head = nn.Linear(16, num_classes)
        return nn.Sequential(OrderedDict(features=features, flatten=nn.Flatten(), classifier=head))
