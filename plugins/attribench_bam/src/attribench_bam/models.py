"""BAM's models: 10-way classifiers of objects (`obj`) or scenes (`scene`, `scene_only`, `scene1`…`scene10`),
trained here and cached, each checked on its validation split before use.

The original used ResNet-50 at 224 px (weights released, no training script). For the embedded bam-synth
(64 px) a small all-convolutional CNN with global average pooling is enough and trains in minutes on 2 CPU
cores; `BamCNN` accepts any image size, so the same code trains on a real build.

Ground truth is checked functionally (Yang & Kim 2019), on the val composites and the same scenes without the
object: the obj model must fall to about chance without the object and the scene model must not care.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from attribench_core import Dataset, Model, Recipe, Verification, predict

ABOVE_CHANCE = 0.1  # obj model on scene-only images: "about chance", at most 1/classes + this
MAX_SCENE_DROP = 0.05  # scene model: accuracy without the object at most this much lower


def bam_cnn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """conv(16, stride 2)–conv(32)–pool–conv(64)–pool–conv(64), 3×3 with ReLUs, global average pooling, a
    linear head: about 25 MFLOP per 64-px image, so that obj and scene train in about a minute each on 2
    CPU cores; the last conv's map (8×8 at 64 px) is Grad-CAM's, as BAM's ResNet block 4 (7×7).
    Separate, non-in-place ReLU modules (hook-based explainers need them)."""
    features = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, 16, 3, stride=2, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(32, 64, 3, padding=1),
            relu3=nn.ReLU(),
            pool3=nn.MaxPool2d(2),
            conv4=nn.Conv2d(64, 64, 3, padding=1),
            relu4=nn.ReLU(),
        )
    )
    return nn.Sequential(
        OrderedDict(
            features=features,
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(64, num_classes),
        )
    )


CAM_LAYER = "features.conv4"


class BamModel(Model):
    """A BAM classifier trained on `dataset` with `recipe`; `verify` checks accuracy against the recipe's
    gate and, for `obj`/`scene`, the ground truth (`ground_truth`)."""

    cam_layer: ClassVar[str | None] = CAM_LAYER
    ground_truth: ClassVar[str | None] = None  # "object" or "scene": what the label depends on

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        return bam_cnn(num_classes, image_shape[0])

    def verify(self, module: nn.Module, test_set: Dataset, *, device: str = "cpu") -> Verification:
        index = np.arange(len(test_set))
        labels = torch.from_numpy(np.asarray(test_set.labels))  # type: ignore[attr-defined]
        with_object = _accuracy(module, lambda i: test_set.batch(i).images, index, labels, device)
        assert self.recipe is not None
        gate = self.recipe.min_accuracy
        summary = {"accuracy": with_object}
        failures = [f"val accuracy {with_object:.3f} < gate {gate:.2f}"] if with_object < gate else []
        if self.ground_truth is not None:
            without = _accuracy(module, test_set.scene_only, index, labels, device)  # type: ignore[attr-defined]
            summary["accuracy_without_object"] = without
            chance = 1 / test_set.num_classes
            failures += _ground_truth_failures(self.ground_truth, with_object, without, chance)
        table = [{"images": "val composites", "accuracy": with_object}]
        if "accuracy_without_object" in summary:
            without = summary["accuracy_without_object"]
            table.append({"images": "same scenes, object removed", "accuracy": without})
        message = "; ".join(failures) or ", ".join(f"{k} {v:.3f}" for k, v in summary.items())
        return Verification(passed=not failures, summary=summary, table=table, message=message)


def _accuracy(module: nn.Module, images: Any, index: np.ndarray, labels: torch.Tensor, device: str) -> float:
    hits = [
        predict(module, images(part), device=device) == labels[part]
        for part in np.array_split(index, max(1, len(index) // 512))
    ]
    return float(torch.cat(hits).float().mean()) if hits else float("nan")


def _ground_truth_failures(depends_on: str, with_object: float, without: float, chance: float) -> list[str]:
    """Spec §2: without the object, the obj model falls to about chance and the scene model holds."""
    if depends_on == "object" and without > chance + ABOVE_CHANCE:
        return [
            f"obj model still {without:.3f} accurate without the object (chance {chance:.2f}, limit "
            f"{chance + ABOVE_CHANCE:.2f}): it does not rely on the object"
        ]
    if depends_on == "scene" and with_object - without > MAX_SCENE_DROP:
        return [
            f"scene model loses {with_object - without:.3f} accuracy without the object (limit "
            f"{MAX_SCENE_DROP}): it relies on the object"
        ]
    return []


# Measured on bam-synth (64 px, seed 0; per-epoch validation accuracy): obj at lr 1e-3 reaches 0.91 only
# after 4 epochs, at 3e-3 0.97 after 3; scene at 1e-3 has 0.94 after one epoch but still leans on the object
# (0.84 without it), 0.994 / 0.989 after 4.
OBJ = Recipe(epochs=4, batch_size=64, lr=3e-3, min_accuracy=0.9, max_attempts=2)
SCENE = Recipe(epochs=4, batch_size=64, lr=1e-3, min_accuracy=0.9, max_attempts=2)
SCENE_ONLY = Recipe(epochs=3, batch_size=64, lr=1e-3, min_accuracy=0.9, max_attempts=2)
SCENE_K = Recipe(epochs=10, batch_size=32, lr=1e-3, min_accuracy=0.8, max_attempts=2)


class ObjModel(BamModel):
    """BAM model `obj`: classifies the object of bam.obj's composites; fails its check unless it relies on
    the object."""

    dataset = "bam.obj"
    recipe = OBJ
    ground_truth = "object"


class SceneModel(BamModel):
    """BAM model `scene`: classifies the scene of the same composites; fails its check if it relies on the
    object."""

    dataset = "bam.scene"
    recipe = SCENE
    ground_truth = "scene"


class SceneOnlyModel(BamModel):
    """BAM model `scene_only`: classifies the scenes without objects (bam.scene_only)."""

    dataset = "bam.scene_only"
    recipe = SCENE_ONLY


class SceneKModel(BamModel):
    """BAM model `scene<k>` (k = 1..10, registered with `k`): classifies the scenes of bam.scene<k>, where
    the dog is in k scene classes (relative model contrast, RMCS)."""

    recipe = SCENE_K

    def __init__(self, k: int) -> None:
        self.k = k
        self.dataset = f"bam.scene{k}"  # type: ignore[misc]
