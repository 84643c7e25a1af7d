"""The Dataset contract and the shared ground-truth schema (named region masks with roles).

A `Sample` carries an image `[C,H,W]` in the dataset's native range (`value_range`, usually `[0,1]`), an
integer label, named boolean region masks `[H,W]` (`box1`, `text`, `object`, ...), the roles of those
regions (`primary`: should be attributed; `secondary`: should not), and free-form metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

Roles = Mapping[str, Sequence[str]]


@dataclass
class Sample:
    image: torch.Tensor
    label: int
    regions: dict[str, torch.Tensor] = field(default_factory=dict)
    roles: Roles = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Several samples stacked: images `[B,C,H,W]`, labels `[B]`, each region `[B,H,W]`."""

    index: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    regions: dict[str, torch.Tensor]
    roles: list[Roles]
    meta: list[dict[str, Any]]

    def role_mask(self, role: str) -> torch.Tensor:
        """Union of the regions that play `role` for each sample, `[B,H,W]` bool (all False if none)."""
        import torch

        b, _, h, w = self.images.shape
        out = torch.zeros(b, h, w, dtype=torch.bool)
        for i, roles in enumerate(self.roles):
            for name in roles.get(role, ()):
                out[i] |= self.regions[name][i]
        return out


class Dataset(ABC):
    """An indexable set of `Sample`s. Generated datasets are deterministic in (options, seed)."""

    num_classes: ClassVar[int]
    class_names: ClassVar[tuple[str, ...]]
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    split: str = "test"
    source: str = ""  # what the data is, printed with every result ("bam-synth: synthetic stand-in for ...")

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)`."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Sample: ...

    def batch(self, index: Sequence[int] | np.ndarray) -> Batch:
        """Stack the samples at `index`; array-backed datasets override this with a vectorised version."""
        import torch

        index = np.asarray(index, dtype=np.int64)
        samples = [self[int(i)] for i in index]
        names = set().union(*(s.regions for s in samples)) if samples else set()
        _, h, w = self.image_shape
        regions = {
            n: torch.stack([s.regions.get(n, torch.zeros(h, w, dtype=torch.bool)) for s in samples])
            for n in sorted(names)
        }
        return Batch(
            index=index,
            images=torch.stack([s.image for s in samples]),
            labels=torch.tensor([s.label for s in samples], dtype=torch.long),
            regions=regions,
            roles=[s.roles for s in samples],
            meta=[s.meta for s in samples],
        )


class ArrayDataset(Dataset):
    """A dataset held in numpy arrays: images `[N,C,H,W]` float32, labels `[N]`, regions name -> `[N,H,W]`.

    `roles` is either one mapping shared by every sample or a list with one mapping per sample.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        regions: Mapping[str, np.ndarray] | None = None,
        roles: Roles | Sequence[Roles] | None = None,
        meta: Sequence[dict[str, Any]] | None = None,
        split: str = "test",
    ) -> None:
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.regions = {k: np.asarray(v, dtype=bool) for k, v in (regions or {}).items()}
        self.roles = roles if roles is not None else {}
        self.meta = meta
        self.split = split
        n = len(self.images)
        if len(self.labels) != n or any(len(v) != n for v in self.regions.values()):
            raise ValueError("images, labels and regions must have the same length")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.images)

    def _roles(self, i: int) -> Roles:
        return self.roles if isinstance(self.roles, Mapping) else self.roles[i]

    def __getitem__(self, index: int) -> Sample:
        import torch

        return Sample(
            image=torch.from_numpy(self.images[index]),
            label=int(self.labels[index]),
            regions={k: torch.from_numpy(v[index]) for k, v in self.regions.items()},
            roles=self._roles(index),
            meta=dict(self.meta[index]) if self.meta is not None else {},
        )

    def batch(self, index: Sequence[int] | np.ndarray) -> Batch:
        import torch

        index = np.asarray(index, dtype=np.int64)
        return Batch(
            index=index,
            images=torch.from_numpy(self.images[index]),
            labels=torch.from_numpy(self.labels[index]),
            regions={k: torch.from_numpy(v[index]) for k, v in self.regions.items()},
            roles=[self._roles(int(i)) for i in index],
            meta=[dict(self.meta[int(i)]) if self.meta is not None else {} for i in index],
        )
