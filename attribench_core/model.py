"""The Model contract: how to build a network, how to obtain its weights, and what explainers must know.

A model takes images in its dataset's native range (any input normalisation is part of the module), and
returns logits `[B, num_classes]`. The metadata that explainers need (CAM layer, input range) travels with
the built module as a `ModelInfo` attached to it, so `explain(model, inputs, targets)` stays simple.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from attribench_core.dataset import Dataset

_INFO_ATTR = "attribench_info"


@dataclass(frozen=True)
class ModelInfo:
    """What explainers may ask of a model: its name, weights, input range, classes and CAM layer."""

    name: str = "unnamed"
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    cam_layer: str | None = None
    weights_hash: str = ""


@dataclass(frozen=True)
class Recipe:
    """A training recipe; its fields enter the weights' cache key."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    min_accuracy: float = 0.0
    max_attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verification:
    """The outcome of a model's check: passed or not, headline numbers, and an optional table to print."""

    passed: bool
    summary: dict[str, float]
    table: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


class Model(ABC):
    """A registered model: subclasses set `dataset` (qualified name), `recipe` and implement `build`.

    `recipe = None` means the weights cannot be trained here and must come from a file (`--weights`),
    which `from_file` reads (a state dict unless the model overrides it).
    """

    dataset: ClassVar[str]
    dataset_options: ClassVar[dict[str, Any]] = {}
    recipe: ClassVar[Recipe | None] = None
    cam_layer: ClassVar[str | None] = None

    @abstractmethod
    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """A freshly initialised network for this dataset's shape."""

    def from_file(self, path: Path, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """The network with the user's weights in `path` (`--weights`): by default `build` loading a state
        dict, bare or under a "model" key. Override it for another format; a `ModelError` it raises is
        shown as is, any other exception as weights that do not fit the model.
        """
        import torch

        module = self.build(num_classes, image_shape)
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        return module

    def fit(self, module: torch.nn.Module, train_set: Dataset, **context: Any) -> None:
        """Train `module` in place; by default supervised cross-entropy with `recipe` (see training.py)."""
        from attribench_core.training import fit_classifier

        assert self.recipe is not None
        fit_classifier(module, train_set, self.recipe, **context)

    def verify(self, module: torch.nn.Module, test_set: Dataset, *, device: str = "cpu") -> Verification:
        """Check trained weights; by default test accuracy against `recipe.min_accuracy`."""
        from attribench_core.training import accuracy

        acc = accuracy(module, test_set, device=device)
        threshold = self.recipe.min_accuracy if self.recipe else 0.0
        return Verification(
            passed=acc >= threshold,
            summary={"accuracy": acc},
            message=f"test accuracy {acc:.3f} (gate {threshold:.2f})",
        )


def attach_info(module: torch.nn.Module, info: ModelInfo) -> torch.nn.Module:
    """Attach `info` to `module` (a plain attribute; not a parameter or buffer)."""
    object.__setattr__(module, _INFO_ATTR, info)
    return module


def model_info(module: torch.nn.Module) -> ModelInfo:
    """The info attached by the runner, or a default one (input range [0,1], last conv layer for CAM)."""
    info = getattr(module, _INFO_ATTR, None)
    return info if isinstance(info, ModelInfo) else ModelInfo(cam_layer=last_conv_layer(module))


def last_conv_layer(module: torch.nn.Module) -> str | None:
    """Dotted path of the last `Conv2d` in registration order, the usual Grad-CAM layer."""
    import torch

    names = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    return names[-1] if names else None


def cam_layer(module: torch.nn.Module) -> torch.nn.Module:
    """The module Grad-CAM-style methods should hook, from the model's info or its last conv layer."""
    path = model_info(module).cam_layer or last_conv_layer(module)
    if path is None:
        raise ValueError("The model has no Conv2d layer and declares no cam_layer; CAM methods need one.")
    return module.get_submodule(path)
