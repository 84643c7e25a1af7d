"""Supervised training of a classifier with a `Recipe`, resumable from per-epoch checkpoints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from attribench_core.cache import atomic_path
from attribench_core.dataset import Dataset
from attribench_core.progress import Progress
from attribench_core.recipe import Recipe

# CPU training's intra-op threads, fixed, as reductions split by thread count round apart. Two: the count
# torch picked on the 2-core machines our published figures come from, so they stay what a fresh clone prints.
TRAINING_THREADS = 2


@contextmanager
def fixed_threads(device: str, threads: int = TRAINING_THREADS) -> Iterator[None]:
    """Run the block with `threads` intra-op CPU threads (on a CPU device), then restore the count.

    SGD amplifies rounding: with 1 and with 2 threads, the same seed trained different weights (and a BAM
    scene model needed a second attempt at one count and not the other). Fixing the count makes trained
    weights a function of (seed, data, code, CPU instruction set) alone, whatever the machine's cores."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_classifier(
    module: torch.nn.Module,
    train_set: Dataset,
    recipe: Recipe,
    *,
    seed: int,
    device: str = "cpu",
    checkpoint: Path | None = None,
    progress: Progress | None = None,
    validation: Dataset | None = None,
) -> None:
    """Adam + cross-entropy for `recipe.epochs`; resumes from `checkpoint` if one exists. `validation` (the
    test split, handed to every model's `fit` for early stopping) is not used by this fixed-length loop.
    Each step reads its batch from `train_set.batch`, so a streamed dataset is never held whole."""
    generator = torch.Generator().manual_seed(seed)
    size = len(train_set)
    module.to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    first_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        first_epoch = int(state["epoch"])
    steps_per_epoch = -(-size // recipe.batch_size)
    advance = progress("training", recipe.epochs * steps_per_epoch) if progress else None
    if advance:
        advance(first_epoch * steps_per_epoch)
    for epoch in range(first_epoch, recipe.epochs):
        order = torch.randperm(size, generator=generator).numpy()
        for start in range(0, size, recipe.batch_size):
            batch = train_set.batch(order[start : start + recipe.batch_size])
            x, y = batch.images.to(device), batch.labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(module(x), y).backward()
            optimizer.step()
            if advance:
                advance(1)
        if checkpoint is not None:
            tmp = atomic_path(checkpoint)
            state = {
                "model": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
            }
            torch.save(state, tmp)
            os.replace(tmp, checkpoint)
    module.eval()


@torch.no_grad()
def predict(
    module: torch.nn.Module, images: torch.Tensor, *, device: str = "cpu", batch_size: int = 256
) -> torch.Tensor:
    """Predicted classes for `images` (on the CPU), in batches."""
    module.eval()
    out = [
        module(images[i : i + batch_size].to(device)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(
    module: torch.nn.Module, dataset: Dataset, *, device: str = "cpu", batch_size: int = 256
) -> float:
    """Share of `dataset` classified correctly, read batch by batch."""
    correct = 0
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(np.arange(start, min(start + batch_size, len(dataset))))
        correct += int((predict(module, batch.images, device=device) == batch.labels).sum())
    return correct / len(dataset)
