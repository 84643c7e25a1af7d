"""A training recipe: the hyper-parameters a `Model` is trained with (shared by model.py and training.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
