"""Variants of an attribution request: the inputs perturbed, or the model's weights altered, before the
explainer runs.

Metrics that compare maps (robustness: perturbed inputs; randomisation: altered models) ask for them in an
`AttributionRequest`; the runner computes and stores these maps like any other, keyed by the variant's
identity (its class and fields) besides the explainer, so a second metric asking for the same variant
reuses them. A variant is a frozen dataclass: its fields are its parameters, it pickles to any executor's
workers, and its randomness comes only from the generators the runner hands it (derived from the run
seed, the variant's identity and, for perturbations, each image's dataset index: the same noise whatever
the batch or worker).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from attribench_core.identity import short_hash
from attribench_core.seeding import derive_seed

if TYPE_CHECKING:
    import numpy as np
    import torch


class Variant:
    """A perturbation or an alteration; subclasses are frozen dataclasses."""

    def identity(self) -> dict[str, Any]:
        """What the store key hashes: the variant's class and fields."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a frozen dataclass to key the store.")
        kind = f"{type(self).__module__}:{type(self).__qualname__}"
        return {"kind": kind, **dataclasses.asdict(self)}

    def describe(self) -> str:
        """One short line for provenance and progress, e.g. `UniformNoise(radius=0.02, draw=3)`."""
        fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())  # type: ignore[call-overload]
        return f"{type(self).__name__}({fields})"


class Perturbation(Variant, ABC):
    """Changes the images of a batch before they are explained (the target stays the unperturbed
    prediction or label)."""

    @abstractmethod
    def perturb(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """The perturbed `images[B,C,H,W]` (on their device); `generators[i]` is image i's own CPU
        generator."""


class Alteration(Variant, ABC):
    """Changes a model's weights (a copy of them: the run's model is untouched) before it is explained."""

    @abstractmethod
    def alter(self, module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
        """`module` altered, in place or as a new module (the runner passes a deep copy of the model in eval
        mode on the run's device); randomness from `generator` (a CPU generator)."""


def variant_identity(
    perturbation: Perturbation | None, alteration: Alteration | None
) -> dict[str, Any] | None:
    """What an attribution key adds for these variants; None when there are none (the key of plain maps
    is unchanged)."""
    identity = {}
    if perturbation is not None:
        identity["perturbation"] = perturbation.identity()
    if alteration is not None:
        identity["alteration"] = alteration.identity()
    return identity or None


def perturbation_generators(
    seed: int, perturbation: Perturbation, index: np.ndarray
) -> list[torch.Generator]:
    """One generator per image, from the run seed, the perturbation and the image's dataset index."""
    import torch

    tag = short_hash(perturbation.identity())
    return [torch.Generator().manual_seed(derive_seed(seed, "perturbation", tag, int(i))) for i in index]


def alteration_generator(seed: int, alteration: Alteration, weights_hash: str) -> torch.Generator:
    """The alteration's generator: from the run seed, the alteration and the weights it alters."""
    import torch

    tag = short_hash(alteration.identity())
    return torch.Generator().manual_seed(derive_seed(seed, "alteration", tag, weights_hash))
