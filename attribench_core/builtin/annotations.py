"""Ground-truth regions for `core.images`: COCO instance annotations, mask PNGs, Pascal VOC boxes.

Rule: an image's class is its class folder. Its primary region `target` is the union of the annotated
instances of that class: COCO instances whose category name, VOC objects whose `<name>`, equals the class's
folder name or its name in the class-index JSON (compared case-insensitively, "_" read as a space); its
secondary region `other` is the union of every other annotated instance. A mask PNG is all target
(nonzero pixels). An image with no annotation, or none of its class, has an empty target, and the
localisation metrics skip it ("no primary region").

Where they are found (`--annotations PATH`):
- a `.json` file: COCO instances (polygons, RLE compressed or not; read with pycocotools), matched to the
  images by `file_name`, the image's path under the folder or else its file name;
- a folder: for `<class>/<image>.<ext>` the mask `<class>/<image>.png` or `<class>/<image>.mask.png`, else
  the VOC file `<class>/<image>.xml` or `<image>.xml` (VOC's flat `Annotations/` folder);
- none: beside each image, `<image>.mask.png`, else `<image>.xml`.
VOC boxes are 1-based and inclusive, as the VOC devkit writes them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from attribench_core.errors import UsageProblem

TARGET, OTHER = "target", "other"
ROLES = {"primary": (TARGET,), "secondary": (OTHER,)}
Size = tuple[int, int]  # (width, height), as PIL gives it
BOX = ("xmin", "ymin", "xmax", "ymax")


def name_key(name: str) -> str:
    """How class and category names are compared: case-insensitive, "_" read as a space."""
    return name.strip().lower().replace("_", " ")


def _size_error(annotation: Path, image: Path, given: Size, actual: Size, what: str = "") -> UsageProblem:
    return UsageProblem(
        f"Annotation '{annotation}'{what} is for a {given[0]}x{given[1]} image, but '{image}' is "
        f"{actual[0]}x{actual[1]} (width x height); annotate the image at its own size."
    )


class Source(ABC):
    """The annotation of one image."""

    path: Path

    @abstractmethod
    def masks(self, image: Path, size: Size, classes: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        """Boolean `[H,W]` target and other regions at the image's own `size`, for its class's names."""


@dataclass(frozen=True)
class MaskFile(Source):
    """A PNG as large as its image: nonzero pixels are the target."""

    path: Path

    def masks(self, image, size, classes):
        from PIL import Image

        try:
            with Image.open(self.path) as picture:
                mask = np.asarray(picture.convert("L")) > 0
        except Exception as exc:
            raise UsageProblem(f"Cannot read mask '{self.path}': {exc}") from None
        if mask.shape != (size[1], size[0]):
            raise UsageProblem(
                f"Mask '{self.path}' is {mask.shape[1]}x{mask.shape[0]} but its image '{image}' is "
                f"{size[0]}x{size[1]} (width x height); masks must match their image."
            )
        return mask, np.zeros_like(mask)


@dataclass(frozen=True)
class VocFile(Source):
    """A Pascal VOC XML file: each `<object>` has a `<name>` and a `<bndbox>` (1-based, inclusive)."""

    path: Path

    def masks(self, image, size, classes):
        try:
            root = ElementTree.parse(self.path).getroot()
            declared = root.find("size")
            boxes = [
                (
                    name_key(obj.findtext("name") or ""),
                    *(round(float(obj.findtext(f"bndbox/{k}") or "")) for k in BOX),
                )
                for obj in root.iter("object")
            ]
            given = (
                (int(declared.findtext("width")), int(declared.findtext("height")))
                if declared is not None
                else size
            )
        except (ElementTree.ParseError, ValueError, TypeError) as exc:
            raise UsageProblem(f"'{self.path}' is not a Pascal VOC annotation: {exc}") from None
        if given != size:
            raise _size_error(self.path, image, given, size)
        target, other = (np.zeros((size[1], size[0]), dtype=bool) for _ in range(2))
        for name, xmin, ymin, xmax, ymax in boxes:
            (target if name in classes else other)[max(ymin - 1, 0) : ymax, max(xmin - 1, 0) : xmax] = True
        return target, other


@dataclass(frozen=True)
class CocoImage(Source):
    """One image's entry in a COCO instances file: its size and its instances (category, segmentation)."""

    path: Path
    size: Size
    instances: tuple[tuple[str, Any], ...]

    def masks(self, image, size, classes):
        from pycocotools import mask as coco_mask

        if self.size != size:
            raise _size_error(self.path, image, self.size, size, f" (its entry for '{image.name}')")
        target, other = (np.zeros((size[1], size[0]), dtype=bool) for _ in range(2))
        for name, segmentation in self.instances:
            try:
                if isinstance(segmentation, list):  # polygons
                    rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, size[1], size[0]))
                elif isinstance(segmentation["counts"], list):  # uncompressed RLE
                    rle = coco_mask.frPyObjects(segmentation, size[1], size[0])
                else:
                    rle = segmentation
                mask = coco_mask.decode(rle).astype(bool)
            except Exception as exc:  # pycocotools raises plain Exceptions for malformed segmentations
                raise UsageProblem(
                    f"A segmentation of '{image.name}' in '{self.path}' is unreadable: {exc}"
                ) from None
            if mask.shape != target.shape:
                raise _size_error(self.path, image, mask.shape[::-1], size, " (an RLE's size)")
            (target if name in classes else other)[mask] = True
        return target, other


@lru_cache(maxsize=2)
def read_coco(path: Path, stamp: tuple[int, int]) -> dict[str, CocoImage]:
    """A COCO instances file as {file_name: CocoImage} (`stamp`, the file's size and mtime, keys the cache
    that the two splits of a run share)."""
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        raise UsageProblem(
            "COCO annotations need pycocotools: pip install 'attribench[coco]' (or pip install pycocotools)."
        ) from None
    try:
        data = json.loads(path.read_text())
        names = {c["id"]: name_key(c["name"]) for c in data["categories"]}
        instances: dict[Any, list[tuple[str, Any]]] = {}
        for ann in data["annotations"]:
            instances.setdefault(ann["image_id"], []).append((names[ann["category_id"]], ann["segmentation"]))
        return {
            entry["file_name"]: CocoImage(
                path, (int(entry["width"]), int(entry["height"])), tuple(instances.get(entry["id"], ()))
            )
            for entry in data["images"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageProblem(
            f"'{path}' is not a COCO instances file (images, annotations, categories): {type(exc).__name__} "
            f"{exc}."
        ) from None


class Annotations:
    """The annotation source of each image of a folder (None: not annotated), by image index."""

    def __init__(self, sources: Sequence[Source | None], files: list[Path]) -> None:
        self.sources = list(sources)
        self.files = files  # what the fingerprint covers

    def regions(self, index: int, image: Path, size: Size, classes: frozenset[str]) -> dict[str, np.ndarray]:
        """`{"target": mask, "other": mask}` of image `index` at its own size (empty if not annotated)."""
        source = self.sources[index]
        if source is None:
            empty = np.zeros((size[1], size[0]), dtype=bool)
            return {TARGET: empty, OTHER: empty}
        target, other = source.masks(image, size, classes)
        return {TARGET: target, OTHER: other}


def _first(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _from_folder(folder: Path, root: Path, image: Path) -> Source | None:
    relative = image.relative_to(root)
    mask = _first(folder / relative.with_suffix(".png"), folder / relative.with_suffix(".mask.png"))
    if mask is not None and mask != image:
        return MaskFile(mask)
    voc = _first(folder / relative.with_suffix(".xml"), folder / f"{image.stem}.xml")
    return VocFile(voc) if voc is not None else None


def _beside(image: Path) -> Source | None:
    mask = image.with_name(f"{image.stem}.mask.png")
    if mask.is_file():
        return MaskFile(mask)
    voc = image.with_suffix(".xml")
    return VocFile(voc) if voc.is_file() else None


def find_annotations(root: Path, images: Sequence[Path], annotations: str) -> Annotations | None:
    """The annotations of `images` (under `root`) from `annotations` (a COCO JSON, a folder, or "" for files
    beside the images); None when there are none. Refuses a source that describes none of the images."""
    if not annotations:
        sources = [_beside(image) for image in images]
        if not any(sources):
            return None
        return Annotations(sources, [s.path for s in sources if s is not None])
    path = Path(annotations)
    if path.is_dir():
        sources = [_from_folder(path, root, image) for image in images]
        files = [s.path for s in sources if s is not None]
        if not files:
            raise UsageProblem(
                f"Annotation folder '{path}' holds no mask (.png, .mask.png) or VOC file (.xml) for any of "
                f"the {len(images)} images in '{root}' (looked for e.g. "
                f"'{path / images[0].relative_to(root).with_suffix('.png')}')."
            )
        return Annotations(sources, files)
    if not path.is_file():
        raise UsageProblem(f"Annotations '{path}' do not exist; give a COCO .json file or a folder of masks.")
    if path.suffix.lower() != ".json":
        raise UsageProblem(
            f"Annotations '{path}' are neither a COCO .json file nor a folder of mask PNGs or VOC XML files."
        )
    stat = path.stat()
    entries = read_coco(path.resolve(), (stat.st_size, stat.st_mtime_ns))
    sources = [entries.get(image.relative_to(root).as_posix()) or entries.get(image.name) for image in images]
    if not any(sources):
        theirs = ", ".join(sorted(entries)[:3]) or "none"
        ours = ", ".join(image.relative_to(root).as_posix() for image in images[:3])
        raise UsageProblem(
            f"Annotation file '{path}' describes none of the {len(images)} images in '{root}'; its file "
            f"names are like {theirs}, the folder's like {ours}."
        )
    return Annotations(sources, [path])
