"""BAM's sets as attribench datasets, read from a built folder (`build.py`): the embedded `bam-synth` by
default, or the real COCO/MiniPlaces build given as `data_root`.

Every factory takes `(split, seed, data_root="", size=64, n=190, val=100)`; `size`, `n` and `val` shape the
synthetic build only (a real build has its own, set by `attribench bam build`). The core's "test" split is
BAM's val split. Rows keep the build's order, so `obj`, `scene` and `scene_only` index the same composites
(and `bamboo_forest` and `bamboo_forest_patch` the same scenes). Region `object`: the pasted object's mask
(in `scene_only` and `bamboo_forest`: where it is, or would be, pasted).
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribench_core import ArrayDataset, Roles

from .build import SYNTH_N, SYNTH_SIZE, SYNTH_VAL, build_synth, load_meta, load_split
from .classes import BAMBOO_FOREST, BEDROOM, DOG, OBJECTS, SCENES


def data_folder(data_root: str | Path, seed: int, size: int, n: int, val: int) -> Path:
    """The built folder to read: `data_root` if given (checked), else the cached bam-synth build."""
    if data_root:
        folder = Path(data_root).expanduser()
        load_meta(folder)  # a one-line error unless it holds a complete build
        return folder
    return build_synth(None, seed=seed, size=size, n=n, val=val)


@lru_cache(maxsize=2)
def _arrays(folder: Path, split: str) -> dict[str, np.ndarray]:
    """A split's arrays, read once per process (several datasets select from the same composites)."""
    arrays = load_split(folder, split)
    for value in arrays.values():
        value.flags.writeable = False
    return arrays


class BamDataset(ArrayDataset):
    """Images of one BAM set with their object masks; `objects`, `scenes` `[N]` give each row's object and
    scene class, `rows` its row in the build's split; `scene_only(index)` and `composite(index)` give the
    same rows without and with the object (for the models' ground-truth check and the patch)."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        rows: np.ndarray,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: tuple[str, ...],
        roles: Roles,
        split: str,
    ) -> None:
        super().__init__(
            to_float(images),
            labels.astype(np.int64),
            {"object": arrays["masks"][rows]},
            roles=roles,
            meta=[{"row": int(r)} for r in rows],
            split=split,
        )
        self.num_classes = len(class_names)  # type: ignore[misc]
        self.class_names = class_names  # type: ignore[misc]
        self.rows = rows
        self.objects = arrays["objects"][rows].astype(np.int64)
        self.scenes = arrays["scenes"][rows].astype(np.int64)
        self._arrays = arrays

    def scene_only(self, index: np.ndarray) -> torch.Tensor:
        """`[B,C,H,W]` float images of `index` without the object (the untouched scenes)."""
        return torch.from_numpy(to_float(self._arrays["scene_only"][self.rows[np.asarray(index)]]))

    def composite(self, index: np.ndarray) -> torch.Tensor:
        """`[B,C,H,W]` float images of `index` with the object pasted in."""
        return torch.from_numpy(to_float(self._arrays["images"][self.rows[np.asarray(index)]]))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 `[N,H,W,3]` -> float32 `[N,3,H,W]` in [0,1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _make(
    choose: Any,
    split: str = "test",
    seed: int = 0,
    data_root: str = "",
    size: int = SYNTH_SIZE,
    n: int = SYNTH_N,
    val: int = SYNTH_VAL,
    **choice: Any,
) -> BamDataset:
    """`choose(arrays, split, meta, **choice)` on the build's split (the core's "test" is BAM's val);
    `choice` is what a set registered with arguments was given (`scene_k`'s `k`)."""
    folder = data_folder(data_root, seed, size, n, val)
    meta = load_meta(folder)
    dataset = choose(_arrays(folder, {"test": "val"}.get(split, split)), split, meta, **choice)
    dataset.source = source_of(folder, meta)
    return dataset


SYNTH_SOURCE = "bam-synth: synthetic stand-in for BAM's COCO+MiniPlaces composites (not BAM's data)"


def source_of(folder: Path, meta: dict[str, Any]) -> str:
    """The one-line `Dataset.source` of a build: bam-synth, or real COCO objects on MiniPlaces scenes."""
    if meta.get("source") == "synth":
        return f"{SYNTH_SOURCE}, {meta['size']} px"
    return (
        f"BAM recipe on real data: COCO objects pasted on MiniPlaces scenes, {meta['size']} px, built by "
        f"`attribench bam build` in {folder}"
    )


def _obj(arrays: dict[str, np.ndarray], split: str, _meta: dict[str, Any]) -> BamDataset:
    rows = np.arange(len(arrays["objects"]))
    return BamDataset(
        arrays, rows, arrays["images"], arrays["objects"], OBJECTS, {"primary": ("object",)}, split
    )


def _scene(arrays: dict[str, np.ndarray], split: str, _meta: dict[str, Any]) -> BamDataset:
    rows = np.arange(len(arrays["scenes"]))
    return BamDataset(
        arrays, rows, arrays["images"], arrays["scenes"], SCENES, {"secondary": ("object",)}, split
    )


def _scene_only(arrays: dict[str, np.ndarray], split: str, _meta: dict[str, Any]) -> BamDataset:
    rows = np.arange(len(arrays["scenes"]))
    return BamDataset(arrays, rows, arrays["scene_only"], arrays["scenes"], SCENES, {}, split)


def _pair_rows(arrays: dict[str, np.ndarray], obj: int, scene: int) -> np.ndarray:
    return np.flatnonzero((arrays["objects"] == obj) & (arrays["scenes"] == scene))


def _dog_bedroom(arrays: dict[str, np.ndarray], split: str, _meta: dict[str, Any]) -> BamDataset:
    rows = _pair_rows(arrays, DOG, BEDROOM)
    return BamDataset(arrays, rows, arrays["images"][rows], arrays["scenes"][rows], SCENES, {}, split)


def _bamboo_forest(arrays: dict[str, np.ndarray], split: str, _meta: dict[str, Any]) -> BamDataset:
    """The scenes on which a dog is pasted in bamboo forests, without the dog; region: the dog's mask."""
    rows = _pair_rows(arrays, DOG, BAMBOO_FOREST)
    return BamDataset(arrays, rows, arrays["scene_only"][rows], arrays["scenes"][rows], SCENES, {}, split)


def _scene_k(arrays: dict[str, np.ndarray], split: str, meta: dict[str, Any], *, k: int) -> BamDataset:
    """Model scene<k>'s data (the set `scene<k>`, registered with `k`): the dog's rows, with the dog in the
    k scene classes `meta.json` names for k (nested, bedroom first) and the plain scene elsewhere, labelled
    by scene: one image per scene image."""
    rows = np.flatnonzero(arrays["objects"] == DOG)
    chosen = [SCENES.index(name) for name in meta["scene_k"][str(k)]]
    with_dog = np.isin(arrays["scenes"][rows], chosen)
    images = np.where(with_dog[:, None, None, None], arrays["images"][rows], arrays["scene_only"][rows])
    return BamDataset(arrays, rows, images, arrays["scenes"][rows], SCENES, {}, split)


obj = partial(_make, _obj)
scene = partial(_make, _scene)
scene_only = partial(_make, _scene_only)
dog_bedroom = partial(_make, _dog_bedroom)
bamboo_forest = partial(_make, _bamboo_forest)
scene_k = partial(_make, _scene_k)  # registered ten times, with k = 1..10
