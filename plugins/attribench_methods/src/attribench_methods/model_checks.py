"""Preparing a model for methods that hook its modules (Guided Backprop, Deconvnet, Grad-CAM, DeepLIFT, LRP).

Captum implements these methods with per-module hooks that assume each hooked module runs once per forward
pass and does not overwrite its input. Two common patterns break that assumption:

- in-place activations (`nn.ReLU(inplace=True)`): the layer's input is gone when the hook reads it;
- one module called several times (torchvision's ResNet blocks call one `relu` two or three times): the
  hooks keep one call's state per module, so DeepLIFT fails and Deconvnet can silently mix up the calls
  (it does on two parallel branches sharing a ReLU).

`canonical_copy` removes both on a deep copy, which also keeps the caller's model free of the attributes
that Captum's LRP leaves on layers (`rule`, `activations`) and of a probe pass's BatchNorm updates.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
from torch import nn

from attribench_core.errors import AttribenchError


class UnsupportedModelError(AttribenchError, ValueError):
    """A model has a layer or structure that a method cannot explain correctly; the message names it."""


class PerCall(nn.Module):
    """Stands in for a module that one forward pass calls several times: call i runs copy i, so hooks on
    each copy see exactly one call. `calls` is reset before every forward of the model that holds it."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def _reset_calls(root: nn.Module, args: Any) -> None:
    for module in root.modules():
        if isinstance(module, PerCall):
            module.calls = 0


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every module without children: the layers that hooks attach to."""
    return [(path, m) for path, m in model.named_modules() if next(m.children(), None) is None]


def call_counts(model: nn.Module, probe: torch.Tensor) -> Counter[nn.Module]:
    """How many times one forward pass of `probe` calls each leaf module (hooks removed afterwards)."""
    counts: Counter[nn.Module] = Counter()
    leaves = [m for _, m in leaf_modules(model)]
    handles = [m.register_forward_pre_hook(lambda mod, _: counts.update([mod])) for m in leaves]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def canonical_copy(model: nn.Module, inputs: torch.Tensor, *, method: str) -> nn.Module:
    """A deep copy of `model` with in-place activations made out-of-place and every leaf module that one
    forward calls k > 1 times replaced by a `PerCall` of k copies (found by a probe pass on `inputs[:1]`).

    The copy computes the same function; the caller's model is never touched.
    """
    try:
        clone = copy.deepcopy(model)
    except Exception as exc:
        raise UnsupportedModelError(
            f"{method} works on a copy of the model, and this model cannot be deep-copied ({exc})."
        ) from exc
    for module in clone.modules():
        if getattr(module, "inplace", None) is True:
            module.inplace = False
    paths: dict[nn.Module, list[str]] = {}
    for path, module in clone.named_modules(remove_duplicate=False):
        paths.setdefault(module, []).append(path)
    reused = {m: n for m, n in call_counts(clone, inputs[:1]).items() if n > 1}
    for module, n in reused.items():
        wrapper = PerCall(module, n)
        for path in paths[module]:
            parent, _, name = path.rpartition(".")
            setattr(clone.get_submodule(parent), name, wrapper)
    if reused:
        clone.register_forward_pre_hook(_reset_calls)
    return clone
