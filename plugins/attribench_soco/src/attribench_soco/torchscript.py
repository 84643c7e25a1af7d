"""`soco.images` and `soco.torchscript`: a user's own image folder and TorchScript classifier.

The folder has the ImageFolder layout `ROOT/<class folder>/<image>.{png,jpg,jpeg,bmp,webp}` (names starting
with "." are skipped). Class indices follow `ROOT/classes.txt` when it exists (one folder name per line, in
the model's output order, e.g. the 1000 ImageNet synsets; a listed class needs no folder), else the sorted
folder names. Images are read as RGB, resized bilinearly so the shorter side is `size`, centre-cropped to
`size`×`size` (SoCo's SmallestMaxSize + CenterCrop) and scaled to [0,1]. Nothing is trained, so both
splits hold the same images.

The model is a TorchScript file given with `--weights`; it receives those [0,1] images, so any input
normalisation must be part of the scripted module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribench_core.dataset import ArrayDataset
from attribench_core.errors import ModelError, UsageProblem
from attribench_core.model import Model

OPTIONS = ("root", "size", "fingerprint")  # the dataset options of soco.images; see `dataset_options`
DEFAULT_SIZE = 224
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
CLASSES_FILE = "classes.txt"


class FolderDataset(ArrayDataset):
    """The images of a folder; each sample's meta names its file (`{"file": "<class>/<image>"}`)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: tuple[str, ...],
        files: Sequence[str],
        split: str,
    ) -> None:
        super().__init__(images, labels, meta=[{"file": f} for f in files], split=split)
        self.num_classes = len(class_names)  # type: ignore[misc]
        self.class_names = class_names  # type: ignore[misc]


def listing(root: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class names in label order and the image files with their labels, sorted by label then name."""
    if not root:
        raise UsageProblem(
            "soco.images needs --images DIR: a folder with one sub-folder of images per class."
        )
    folder = Path(root)
    if not folder.is_dir():
        raise UsageProblem(f"Image folder '{folder}' does not exist.")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UsageProblem(
            f"Image folder '{folder}' has no class folders; put the images in {folder}/<class>/<image>.png."
        )
    classes = tuple(found)
    listed = folder / CLASSES_FILE
    if listed.is_file():
        classes = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        if len(set(classes)) < len(classes):
            repeated = next(c for i, c in enumerate(classes) if c in classes[:i])
            raise UsageProblem(f"'{listed}' lists '{repeated}' more than once.")
        unlisted = sorted(set(found) - set(classes))
        if unlisted:
            raise UsageProblem(f"Class folder '{unlisted[0]}' of '{folder}' is not listed in '{listed}'.")
    files = [
        (path, label)
        for label, name in enumerate(classes)
        if (folder / name).is_dir()
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in EXTENSIONS and not path.name.startswith(".") and path.is_file()
    ]
    if not files:
        kinds = ", ".join(sorted(EXTENSIONS))
        raise UsageProblem(f"The class folders of '{folder}' hold no images ({kinds}).")
    return classes, files


def dataset_options(root: str, size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """The options of soco.images for a metric's `dataset_options()`: the folder's absolute path, the side,
    and a fingerprint of its files (names, sizes, modification times) so that the attribution store keys
    change when the images do."""
    classes, files = listing(root)
    folder = Path(root).resolve()
    digest = hashlib.sha256("\n".join(classes).encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"\n{label} {path.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    return {"root": str(folder), "size": size, "fingerprint": digest.hexdigest()[:16]}


def load_image(path: Path, size: int) -> np.ndarray:
    """`[3,size,size]` float32 in [0,1]: RGB, shorter side resized to `size`, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            image = picture.convert("RGB")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageProblem(f"Cannot read image '{path}': {first}") from None
    width, height = image.size
    scale = size / min(width, height)
    width, height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)


def make_images(
    split: str = "test", seed: int = 0, root: str = "", size: int = DEFAULT_SIZE, fingerprint: str = ""
) -> FolderDataset:
    """The images under `root` at `size`×`size`, the same for every split and seed. `fingerprint` only
    enters the store key (see `dataset_options`)."""
    if size < 1:
        raise UsageProblem(f"soco.images needs a positive image size; got {size}.")
    classes, files = listing(root)
    images = np.empty((len(files), 3, size, size), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        images[i] = load_image(path, size)
    labels = np.array([label for _, label in files], dtype=np.int64)
    names = [path.relative_to(root).as_posix() for path, _ in files]
    return FolderDataset(images, labels, classes, names, split)


class TorchScriptModel(Model):
    """A user's classifier saved as TorchScript, given with `--weights FILE`; it takes `[B,3,H,W]` images in
    [0,1] (normalisation inside the module) and returns logits `[B, classes]` in the folder's class order."""

    dataset = "soco.images"
    recipe = None

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        raise ModelError(
            "soco.torchscript is read from a file; pass your TorchScript model with --weights FILE."
        )

    def from_file(self, path: Path, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """Load the TorchScript module and check that one image gives `num_classes` logits."""
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise ModelError(
                f"'{path}' is not a TorchScript model; save yours with torch.jit.script(model).save(path) "
                "or torch.jit.trace(model, images).save(path)."
            ) from None
        module.eval()
        shape = "x".join(map(str, image_shape))
        try:
            with torch.no_grad():
                logits = module(torch.zeros(1, *image_shape))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"The model in '{path}' fails on a {shape} image: {first}") from None
        if not isinstance(logits, torch.Tensor) or logits.shape[:1] != (1,) or logits.dim() != 2:
            got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelError(f"The model in '{path}' returns {got} for one {shape} image, not logits [1, K].")
        if logits.shape[1] != num_classes:
            raise ModelError(
                f"The model in '{path}' gives {logits.shape[1]} logits per image but the image folder has "
                f"{num_classes} classes; list the model's classes, in its output order, in {CLASSES_FILE}."
            )
        return module
