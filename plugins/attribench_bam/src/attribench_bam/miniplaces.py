"""MiniPlaces scene images for BAM's real source: the first `n` training images of each scene class.

MiniPlaces keeps its training images as `<root>/train/<first letter>/<scene folder>/NNNNNNNN.jpg`
(e.g. `train/b/bamboo_forest/00000001.jpg`, `train/t/track/outdoor/00000001.jpg`); `<root>/images/train/...`
is accepted too. Images are taken in sorted file-name order, as RGB, resized bilinearly to `size`×`size`
when they are not already (MiniPlaces' own are 128×128).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attribench_core import UsageProblem

from .classes import MINIPLACES_FOLDERS, SCENES

TRAIN_FOLDERS = ("train", "images/train")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def train_folder(miniplaces_root: str | Path) -> Path:
    """MiniPlaces' training-image folder under `miniplaces_root`, or a one-line `UsageProblem`."""
    root = Path(miniplaces_root).expanduser()
    if not root.is_dir():
        raise UsageProblem(
            f"MiniPlaces folder {str(root)!r} does not exist; pass --miniplaces-root pointing to MiniPlaces' "
            "data folder (the one holding train/)."
        )
    found = next((root / sub for sub in TRAIN_FOLDERS if (root / sub).is_dir()), None)
    if found is None:
        raise UsageProblem(
            f"MiniPlaces folder {str(root)!r} has no train/ (nor images/train/) folder; "
            "pass --miniplaces-root pointing to the folder holding train/b/bamboo_forest/."
        )
    return found


def scene_files(train: Path, scene: str, n: int) -> list[Path]:
    """The first `n` image files (sorted by name) of `scene` under MiniPlaces' `train` folder."""
    folder = train / scene[0] / MINIPLACES_FOLDERS[scene]
    if not folder.is_dir():
        raise UsageProblem(
            f"MiniPlaces scene folder {str(folder)!r} does not exist; is {str(train.parent)!r} MiniPlaces?"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        raise UsageProblem(
            f"Only {len(files)} MiniPlaces images of {scene!r} in {str(folder)!r}; --n {n} needs {n}. "
            f"Use a smaller --n (at most {len(files)})."
        )
    return files[:n]


def read_scene(path: Path, size: int) -> np.ndarray:
    """One scene image as uint8 RGB `[size,size,3]`."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            image = picture.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:
        raise UsageProblem(f"MiniPlaces image {str(path)!r} cannot be read ({exc}).") from exc


def miniplaces_files(miniplaces_root: str | Path, n: int) -> list[list[Path]]:
    """The first `n` image files of each scene class (in `SCENES` order); checks every folder and count."""
    train = train_folder(miniplaces_root)
    return [scene_files(train, scene, n) for scene in SCENES]


def read_scenes(files: list[list[Path]], size: int) -> np.ndarray:
    """The scene images of `miniplaces_files`, uint8 `[10,n,size,size,3]`."""
    return np.stack([np.stack([read_scene(path, size) for path in paths]) for paths in files])
