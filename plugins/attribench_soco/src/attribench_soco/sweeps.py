"""Removal sweeps on a batch: fill the removed pixels of each step (noisy linear imputation or a constant) and
record whether the model still classifies each image correctly, and its score for the label.

The images stay on the device for the whole sweep, one forward pass per step for the batch; consecutive
imputations are warm-started from the previous step's images, which differ in a few pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .imputation import impute

FILLS = ("impute", "zero")


@dataclass(frozen=True)
class Outcomes:
    """Per step and image: `correct[T, B]` (argmax equals the label) and `score[T, B]` (the label's logit)."""

    correct: np.ndarray
    score: np.ndarray

    @staticmethod
    def concatenate(parts: list[Outcomes]) -> Outcomes:
        """Outcomes of consecutive batches side by side: `[T, N]`."""
        return Outcomes(
            np.concatenate([p.correct for p in parts], axis=1),
            np.concatenate([p.score for p in parts], axis=1),
        )


@torch.no_grad()
def judge(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """(correct `[B]`, label logit `[B]`) of `model` on `images`."""
    logits = model(images)
    correct = logits.argmax(dim=1) == labels
    return correct.cpu().numpy(), logits.gather(1, labels[:, None])[:, 0].float().cpu().numpy()


def sweep(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    removals: Iterable[torch.Tensor],
    *,
    fill: str = "impute",
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Outcomes:
    """Judge `images` `[B,C,H,W]` (on the model's device) with the pixels of each mask of `removals`
    (`[B,H,W]`, True = removed) filled: "impute" (noisy linear imputation, `noise` from `generator`) or
    "zero" (the value 0 of the model's input space, as the original Deletion)."""
    if fill not in FILLS:
        raise ValueError(f"Unknown fill '{fill}'; use one of {', '.join(FILLS)}.")
    correct, score = [], []
    previous: torch.Tensor | None = None
    for removed in removals:
        removed = removed.to(images.device)
        if fill == "impute":
            filled = impute(images, removed, noise=noise, generator=generator, init=previous)
            previous = filled
        else:
            filled = images * ~removed[:, None]
        right, logit = judge(model, filled, labels)
        correct.append(right)
        score.append(logit)
    return Outcomes(np.stack(correct), np.stack(score))
