"""Removal sweeps on a batch: fill the removed pixels of each step (noisy linear imputation or a fixed
canvas) and record whether the model still classifies each image correctly, its score for the label, and
its softmax probability for the explained class.

The images stay on the device for the whole sweep, one forward pass per step for the batch; consecutive
imputations are warm-started from the previous step's images, which differ in a few pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from . import functional
from .imputation import impute

CANVASES = ("zero", "mean", "blur")  # fills that replace removed pixels by a fixed canvas per image
FILLS = ("impute", *CANVASES)


@dataclass(frozen=True)
class Outcomes:
    """Per step and image: `correct[T, B]` (argmax equals the label), `score[T, B]` (the label's logit) and
    `probability[T, B]` (the softmax probability of the explained class)."""

    FIELDS = ("correct", "score", "probability")

    correct: np.ndarray
    score: np.ndarray
    probability: np.ndarray

    def take(self, index: np.ndarray) -> Outcomes:
        """The outcomes of the images at positions `index` (with repeats: a bootstrap resample)."""
        return Outcomes(self.correct[:, index], self.score[:, index], self.probability[:, index])

    @staticmethod
    def concatenate(parts: list[Outcomes]) -> Outcomes:
        """Outcomes of consecutive batches side by side: `[T, N]`."""
        return Outcomes(*(np.concatenate([getattr(p, f) for p in parts], axis=1) for f in Outcomes.FIELDS))


@torch.no_grad()
def judge(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correct `[B]`, label logit `[B]`, softmax probability of `targets` `[B]`) of `model` on `images`."""
    logits = model(images)
    correct = logits.argmax(dim=1) == labels
    probability = logits.float().softmax(dim=1).gather(1, targets[:, None])[:, 0]
    return (
        correct.cpu().numpy(),
        logits.gather(1, labels[:, None])[:, 0].float().cpu().numpy(),
        probability.cpu().numpy(),
    )


def canvas(images: torch.Tensor, fill: str) -> torch.Tensor:
    """What removed pixels become under a fixed fill, per image `[B,C,H,W]`: "zero" (0 of the model's input
    space: black for the built-in data), "mean" (the image's mean colour) or "blur" (RISE's Gaussian blur,
    `functional.blur`)."""
    if fill == "zero":
        return torch.zeros_like(images)
    if fill == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if fill == "blur":
        return functional.blur(images)
    raise ValueError(f"Unknown fill '{fill}'; use one of {', '.join(FILLS)}.")


def sweep(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    removals: Iterable[torch.Tensor],
    *,
    targets: torch.Tensor | None = None,
    fill: str = "impute",
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Outcomes:
    """Judge `images` `[B,C,H,W]` (on the model's device) with the pixels of each mask of `removals`
    (`[B,H,W]`, True = removed) filled: "impute" (noisy linear imputation, `noise` from `generator`) or a
    fixed canvas (`canvas`). `targets` (default: the labels) is the class whose probability is recorded."""
    if fill not in FILLS:
        raise ValueError(f"Unknown fill '{fill}'; use one of {', '.join(FILLS)}.")
    targets = labels if targets is None else targets
    background = None if fill == "impute" else canvas(images, fill)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    previous: torch.Tensor | None = None
    for removed in removals:
        removed = removed.to(images.device)
        if background is None:
            filled = impute(images, removed, noise=noise, generator=generator, init=previous)
            previous = filled
        else:
            filled = torch.where(removed[:, None], background, images)
        rows.append(judge(model, filled, labels, targets))
    return Outcomes(*(np.stack(column) for column in zip(*rows, strict=True)))
