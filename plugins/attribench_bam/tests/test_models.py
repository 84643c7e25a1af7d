"""BAM's models: the CNN, the registered classes, and the functional ground-truth check (Yang & Kim 2019)."""

from __future__ import annotations

import attribench_bam.plugin
import numpy as np
import pytest
import torch
from attribench_bam import models
from torch import nn

from attribench_core.dataset import ArrayDataset
from attribench_core.testing import plugin_registry


def test_bam_cnn_gives_logits_for_any_size_and_names_its_cam_layer():
    module = models.bam_cnn(10)
    for side in (32, 64, 128):
        assert module(torch.rand(2, 3, side, side)).shape == (2, 10)
    assert isinstance(module.get_submodule(models.CAM_LAYER), nn.Conv2d)
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(r.inplace for r in relus) and len(set(map(id, relus))) == len(relus)


def test_registered_models_train_on_their_own_sets():
    registry = plugin_registry({"bam": attribench_bam.plugin})
    made = {
        name: registry.resolve("model", f"bam.{name}").create() for name in ("obj", "scene", "scene_only")
    }
    assert {name: model.dataset for name, model in made.items()} == {
        "obj": "bam.obj",
        "scene": "bam.scene",
        "scene_only": "bam.scene_only",
    }
    scene7 = registry.resolve("model", "bam.scene7").create()
    assert type(scene7) is models.SceneKModel and scene7.dataset == "bam.scene7"
    assert scene7.recipe == models.SCENE_K
    assert [made[name].ground_truth for name in ("obj", "scene", "scene_only")] == ["object", "scene", None]


class ReadsChannel(nn.Module):
    """Predicts class 1 where the mean of `channel` exceeds ½, else 0: the "object" is a bright red image."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x[:, self.channel].mean((1, 2)) > 0.5).float()
        return torch.stack([1 - bright, bright], dim=1) + 0 * self.dummy


class WithSceneOnly(ArrayDataset):
    num_classes = 2

    def __init__(self, images: np.ndarray, labels: np.ndarray, without: np.ndarray) -> None:
        super().__init__(images, labels)
        self.without = without

    def scene_only(self, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.without[index])


def _data() -> WithSceneOnly:
    """4 images: label 1 = a red object present (channel 0 bright); removing it leaves green scenes."""
    images = np.zeros((4, 3, 2, 2), np.float32)
    images[:2, 0] = 1.0  # red object in images 0, 1
    images[:, 1] = np.array([1, 0, 1, 0], np.float32)[:, None, None]  # the scene: green or not
    without = images.copy()
    without[:, 0] = 0.0
    return WithSceneOnly(images, np.array([1, 1, 0, 0]), without)


@pytest.mark.parametrize(
    ("model", "channel", "labels", "passed", "message"),
    [
        (models.ObjModel, 0, [1, 1, 0, 0], True, "accuracy_without_object 0.500"),
        (models.ObjModel, 1, [1, 0, 1, 0], False, "does not rely on the object"),
        (models.SceneModel, 1, [1, 0, 1, 0], True, "accuracy_without_object 1.000"),
        (models.SceneModel, 0, [1, 1, 0, 0], False, "relies on the object"),
    ],
)
def test_verify_checks_accuracy_and_what_the_model_relies_on(model, channel, labels, passed, message):
    data = _data()
    data.labels = np.array(labels)
    verification = model().verify(ReadsChannel(channel), data)
    assert verification.passed is passed and message in verification.message
    assert verification.summary["accuracy"] == 1.0
    assert [row["images"] for row in verification.table] == ["val composites", "same scenes, object removed"]
