"""The Model contract: how to build a network, how to obtain its weights, and what explainers must know.

A model takes images in its dataset's native range (any input normalisation is part of the module), and
returns logits `[B, num_classes]`. The metadata that explainers need (CAM layer, input range) travels with
the built module as a `ModelInfo` attached to it, so `explain(model, inputs, targets)` stays simple.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from attribench_core.errors import ModelError
from attribench_core.recipe import Recipe

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from attribench_core.dataset import Dataset

_INFO_ATTR = "attribench_info"
TOKENS = "tokens"  # `--cam-layer NAME:tokens`: a transformer block read as a feature map


@dataclass(frozen=True)
class ModelInfo:
    """What explainers may ask of a model: its name, weights, input range, classes and CAM layer."""

    name: str = "unnamed"
    input_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    cam_layer: str | None = None  # a dotted module path, or `path:tokens` (see `cam_layer_path`)
    weights_hash: str = ""


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
    which `from_file` reads (a state dict unless the model overrides it), or, with `built_with_weights`,
    from `build` itself (a user's own network, see `model_sources`).
    """

    dataset: ClassVar[str]
    dataset_options: ClassVar[dict[str, Any]] = {}
    recipe: ClassVar[Recipe | None] = None
    cam_layer: ClassVar[str | None] = None
    built_with_weights: ClassVar[bool] = False

    @abstractmethod
    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """A freshly initialised network for this dataset's shape."""

    def from_file(self, path: Path, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """The network with the user's weights in `path` (`--weights`): by default `build` loading a state
        dict, bare or under a common key (`load_state_dict_file`). Override it for another format; a
        `ModelError` it raises is shown as is, any other exception as weights that do not fit the model.
        """
        from attribench_core.state_dict import load_state_dict_file

        module = self.build(num_classes, image_shape)
        load_state_dict_file(module, path)
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
    """Dotted path of the last `Conv2d` in registration order whose windows overlap or whose stride is 1, the
    usual Grad-CAM layer. Skipped: strided convolutions with kernel ≤ stride, whose output is a patchified
    or subsampled input rather than a feature map: patch embeddings (ViT's `patch_embeddings.projection`,
    ConvNeXt's stem and downsampling layers) and the strided 1×1 projections of residual shortcuts."""
    import torch

    names = [
        name for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d) and not _patchifies(m)
    ]
    return names[-1] if names else None


def _patchifies(conv: torch.nn.Conv2d) -> bool:
    return max(conv.stride) > 1 and all(k <= s for k, s in zip(conv.kernel_size, conv.stride, strict=True))


def check_hookable(module: torch.nn.Module, method: str) -> None:
    """Raise a `ModelError` when `module` is or holds TorchScript, whose submodules take no hooks."""
    import torch

    if any(isinstance(m, torch.jit.ScriptModule) for m in module.modules()):
        raise ModelError(
            f"{method} needs module hooks, which TorchScript hides; pass the model as Python: "
            "--model file.py:build"
        )


def cam_layer_path(module: torch.nn.Module, method: str = "This method") -> tuple[str, bool]:
    """`(path, tokens)` of the layer CAM methods hook: the model's declared `ModelInfo.cam_layer`, else its
    last convolution that is not a patch embedding. A declared `path:tokens` names a transformer block
    whose output `[B, 1+h*w, D]` (a class token, then h×w patch tokens) is read as a map `[B, D, h, w]`;
    `tokens` is then True."""
    check_hookable(module, method)
    declared = model_info(module).cam_layer
    path, _, reshape = (declared or last_conv_layer(module) or "").partition(":")
    if not path:
        raise ModelError(
            f"{method}: the model has no convolutional feature map; pass --cam-layer NAME:tokens for a "
            "transformer block whose output is [B, 1+h*w, D]"
        )
    return path, reshape == TOKENS


def cam_layer(module: torch.nn.Module, method: str = "This method") -> torch.nn.Module:
    """The module Grad-CAM-style methods should hook (see `cam_layer_path`)."""
    return module.get_submodule(cam_layer_path(module, method)[0])
