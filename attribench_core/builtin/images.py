"""`core.images`: your own image folder, decoded batch by batch, with optional ground-truth regions.

Layout (ImageNet's): `ROOT/<class folder>/<image>.{png,jpg,jpeg,bmp,webp}`; names starting with "." are
skipped, and `*.mask.png` files are masks, not images. Class indices (the model's output order) follow
`ROOT/classes.txt` (one folder name per line; a listed class needs no folder) or a class-index JSON
(`ROOT/class_index.json` or `ROOT/imagenet_class_index.json`, the form `{"0": ["n01440764", "tench"]}`:
output index -> [folder, name]), else the sorted folder names. Each image is read as RGB, resized
bilinearly so that its shorter side is `size`, centre-cropped to `size`×`size` and scaled to [0,1]; its
regions (see `annotations.py`) go through the same resize (nearest neighbour) and crop.

Only the listing (paths and labels) and the annotations' outlines are held; pixels are decoded when a
sample or batch is asked for, so memory does not grow with the folder. Nothing is trained on the images,
so both splits are the same images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribench_core.builtin.annotations import ROLES, Annotations, find_annotations, name_key
from attribench_core.dataset import Dataset, Sample
from attribench_core.errors import UsageProblem

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_SIZE = 224
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
MASK_SUFFIX = ".mask.png"
CLASSES_FILE = "classes.txt"
INDEX_FILES = ("class_index.json", "imagenet_class_index.json")


@dataclass(frozen=True)
class Listing:
    """A folder's classes in output order (folder names, display names), its images with their labels, and
    the file that set the classes (None: sorted folder names)."""

    folders: tuple[str, ...]
    names: tuple[str, ...]
    files: list[tuple[Path, int]]
    classes_file: Path | None


def _class_index(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Folders and names, in output order, from a class-index JSON `{"0": ["n01440764", "tench"], ...}`."""
    form = 'the form {"0": ["n01440764", "tench"], ...} (output index -> [folder, name])'
    try:
        index = json.loads(path.read_text())
        entries = [index[str(i)] for i in range(len(index))]
        pairs = [(e, e) if isinstance(e, str) else (str(e[0]), str(e[1])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        raise UsageProblem(f"Class index '{path}' is not JSON of {form}.") from None
    return tuple(f for f, _ in pairs), tuple(n for _, n in pairs)


def listing(root: str) -> Listing:
    """The classes and the image files of `root`, sorted by label then name; one-line errors otherwise."""
    if not root:
        raise UsageProblem(
            "core.images needs --images DIR: a folder with one sub-folder of images per class."
        )
    folder = Path(root)
    if not folder.is_dir():
        raise UsageProblem(f"Image folder '{folder}' does not exist.")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UsageProblem(
            f"Image folder '{folder}' has no class folders; put the images in {folder}/<class>/<image>.png."
        )
    given = [p for p in (folder / CLASSES_FILE, *(folder / n for n in INDEX_FILES)) if p.is_file()]
    if len(given) > 1:
        raise UsageProblem(
            f"Image folder '{folder}' has both '{given[0].name}' and '{given[1].name}'; keep one."
        )
    source = given[0] if given else None
    folders = names = tuple(found)
    if source is not None and source.name == CLASSES_FILE:
        folders = names = tuple(line.strip() for line in source.read_text().splitlines() if line.strip())
    elif source is not None:
        folders, names = _class_index(source)
    if source is not None:
        if len(set(folders)) < len(folders):
            repeated = next(c for i, c in enumerate(folders) if c in folders[:i])
            raise UsageProblem(f"'{source}' lists '{repeated}' more than once.")
        unlisted = sorted(set(found) - set(folders))
        if unlisted:
            raise UsageProblem(f"Class folder '{unlisted[0]}' of '{folder}' is not listed in '{source}'.")
    files = [
        (path, label)
        for label, name in enumerate(folders)
        if (folder / name).is_dir()
        for path in sorted((folder / name).iterdir())
        if _is_image(path)
    ]
    if not files:
        kinds = ", ".join(sorted(EXTENSIONS))
        raise UsageProblem(f"The class folders of '{folder}' hold no images ({kinds}).")
    return Listing(folders, names, files, source)


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    return (
        path.suffix.lower() in EXTENSIONS
        and not name.startswith(".")
        and not name.endswith(MASK_SUFFIX)
        and path.is_file()
    )


def dataset_options(root: str, annotations: str = "", size: int = DEFAULT_SIZE) -> dict[str, Any]:
    """The options of core.images, resolved once per run: absolute paths, the side, and a fingerprint of
    the classes, the image files and the annotation files (names, sizes, modification times), so that the
    store's keys change when any of them does."""
    found = listing(root)
    annotated = find_annotations(Path(root), [p for p, _ in found.files], annotations)
    digest = hashlib.sha256(
        "\n".join(f"{f} {n}" for f, n in zip(found.folders, found.names, strict=True)).encode()
    )
    base = Path(root)
    extra = [] if annotated is None else annotated.files
    for path in [*(p for p, _ in found.files), *extra]:
        stat = path.stat()
        name = path.relative_to(base) if path.is_relative_to(base) else path.resolve()
        digest.update(f"\n{name} {stat.st_size} {stat.st_mtime_ns}".encode())
    return {
        "root": str(base.resolve()),
        "annotations": str(Path(annotations).resolve()) if annotations else "",
        "size": size,
        "fingerprint": digest.hexdigest()[:16],
    }


def open_image(path: Path) -> Image.Image:
    """The picture at `path` as RGB, or a one-line `UsageProblem`."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return picture.convert("RGB")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageProblem(f"Cannot read image '{path}': {first}") from None


def fit(picture: Image.Image, size: int, nearest: bool = False) -> Image.Image:
    """Resize so that the shorter side is `size` (bilinear, or nearest for masks), then crop the centre
    `size`×`size` (SoCo's SmallestMaxSize + CenterCrop)."""
    from PIL import Image

    width, height = picture.size
    scale = size / min(width, height)
    width, height = max(size, round(width * scale)), max(size, round(height * scale))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    picture = picture.resize((width, height), resample)
    left, top = (width - size) // 2, (height - size) // 2
    return picture.crop((left, top, left + size, top + size))


class ImageFolder(Dataset):
    """The images of a folder, decoded on demand; each sample's meta names its file (`<class>/<image>`)."""

    def __init__(
        self, root: Path, found: Listing, size: int, annotations: Annotations | None, split: str
    ) -> None:
        self.root, self.size, self.split = root, size, split
        self.files = [(path.relative_to(root).as_posix(), label) for path, label in found.files]
        self.annotations = annotations
        self.num_classes = len(found.folders)  # type: ignore[misc]
        self.class_names = found.folders  # type: ignore[misc]
        self.class_keys = [
            frozenset({name_key(f), name_key(n)}) for f, n in zip(found.folders, found.names, strict=True)
        ]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return 3, self.size, self.size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        import torch
        from PIL import Image

        name, label = self.files[index]
        picture = open_image(self.root / name)
        image = np.asarray(fit(picture, self.size), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
        regions = {}
        if self.annotations is not None:
            outlines = self.annotations.regions(index, self.root / name, picture.size, self.class_keys[label])
            for region, mask in outlines.items():
                fitted = fit(Image.fromarray(mask.astype(np.uint8)), self.size, nearest=True)
                regions[region] = torch.from_numpy(np.asarray(fitted) > 0)
        return Sample(
            image=torch.from_numpy(image),
            label=label,
            regions=regions,
            roles=ROLES if self.annotations is not None else {},
            meta={"file": name},
        )


def make_images(
    split: str = "test",
    seed: int = 0,
    root: str = "",
    annotations: str = "",
    size: int = DEFAULT_SIZE,
    fingerprint: str = "",
) -> ImageFolder:
    """The images under `root` at `size`×`size` with the regions of `annotations`, the same for every split
    and seed. `fingerprint` only enters the store key (see `dataset_options`)."""
    if size < 1:
        raise UsageProblem(f"core.images needs a positive image size; got {size}.")
    found = listing(root)
    annotated = find_annotations(Path(root), [p for p, _ in found.files], annotations)
    return ImageFolder(Path(root), found, size, annotated, split)
