"""Helpers shared by the explainers: input checks, the target logit's gradient, the run's generator, and a
thin base class for methods that are one Captum `attribute` call."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from captum import attr as captum_attr

from attribench_core import Explainer, model_info
from attribench_methods.model_checks import canonical_copy


def checked_batch(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`inputs` detached (Captum toggles `requires_grad` on what it is given; inference tensors are cloned,
    since autograd cannot use them) and `targets` as a LongTensor on the inputs' device; a malformed batch
    raises ValueError before any hook is set."""
    if inputs.dim() != 4:
        raise ValueError(f"Explainers take images [B,C,H,W]; got inputs of shape {tuple(inputs.shape)}.")
    targets = torch.as_tensor(targets, dtype=torch.long, device=inputs.device).reshape(-1)
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"Got {targets.shape[0]} targets for a batch of {inputs.shape[0]} images.")
    num_classes = model_info(model).num_classes
    low, high = (int(targets.min()), int(targets.max())) if targets.numel() else (0, -1)
    if low < 0 or (num_classes is not None and high >= num_classes):
        raise ValueError(f"Targets must lie in [0, {num_classes}); got {targets.tolist()}.")
    return (inputs.clone() if inputs.is_inference() else inputs.detach()), targets


def target_gradient(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d logit[b, targets[b]] / d inputs[b] for every sample b; parameters' `.grad` stay untouched."""
    x = inputs.detach().requires_grad_(True)
    logits = model(x)
    if targets.numel() and int(targets.max()) >= logits.shape[1]:
        raise ValueError(f"Targets must lie in [0, {logits.shape[1]}); got {targets.tolist()}.")
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return grad


def generator_or_default(generator: torch.Generator | None) -> torch.Generator:
    """The run's generator, or a fresh CPU generator seeded with 0 so that direct calls stay reproducible."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


@contextmanager
def quiet_captum() -> Iterator[None]:
    """Silence Captum's per-call notices ("Setting backward hooks ...") that would flood a run's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Setting .*hooks", category=UserWarning)
        yield


class CaptumExplainer(Explainer):
    """An explainer that is one `captum.attr.<captum_class>(model).attribute(...)` call.

    `canonical = True` runs it on `canonical_copy(model)` (for methods that hook modules, see
    `model_checks`); `attribute_kwargs` adds method-specific arguments (baselines, steps, ...).
    """

    captum_class: ClassVar[str]
    canonical: ClassVar[bool] = False

    def attribute_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for `attribute`, usually read from `self.params`."""
        return {}

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        """The module Captum works on: `model` itself, or its canonical copy for hook-based methods."""
        return canonical_copy(model, inputs, method=type(self).__name__) if self.canonical else model

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        method = getattr(captum_attr, self.captum_class)(self.attribution_model(model, inputs))
        inputs.requires_grad_(True)  # on our detached alias, which spares Captum's "did not require" warning
        with quiet_captum():
            return method.attribute(inputs, target=targets, **self.attribute_kwargs())
