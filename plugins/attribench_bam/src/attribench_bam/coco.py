"""COCO object cut-outs for BAM's real source, with pycocotools (the original's `extract_coco_objects`).

For each object class: the images holding its COCO category, in image-id order; in each, the category's
largest-area annotation (crowd annotations included, as in the original), its mask from `annToMask`, and
the cut-out: the image cropped to the annotation's int-truncated bbox, as RGBA with alpha = mask (255/0)
and black outside the mask. [The original made every exactly-black pixel transparent, object pixels
included; here the alpha is the mask.] Images that cannot give a cut-out (file missing or unreadable, size
not matching the annotation, malformed segmentation, empty mask) are skipped, counted and reported, until
`n` cut-outs per class.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attribench_core import UsageProblem

from .classes import COCO_NAMES, OBJECTS

if TYPE_CHECKING:
    from pycocotools.coco import COCO

COCO_KEYS = ("images", "annotations", "categories")
IMAGE_SUBFOLDERS = ("train2017", "images/train2017")
"""Where the images may lie under `--coco-root` (else directly in it)."""


class UnusableImage(Exception):
    """A COCO image that gives no cut-out; the message is the reason, counted in the report."""


def load_coco(annotation_file: str | Path) -> COCO:
    """The indexed COCO instances file, or a one-line `UsageProblem` if it is missing or not COCO JSON."""
    from pycocotools.coco import COCO

    path = Path(annotation_file).expanduser()
    hint = "pass --coco-annotations pointing to COCO's annotations/instances_train2017.json"
    if not path.is_file():
        raise UsageProblem(f"COCO annotation file {str(path)!r} does not exist; {hint}.")
    try:
        with open(path, encoding="utf-8") as handle:
            dataset = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageProblem(
            f"COCO annotation file {str(path)!r} is not readable JSON ({exc}); {hint}."
        ) from exc
    lacking = [
        key for key in COCO_KEYS if not isinstance(dataset, dict) or not isinstance(dataset.get(key), list)
    ]
    if lacking:
        raise UsageProblem(
            f"{str(path)!r} is not a COCO instances file (no {', '.join(lacking)} list); {hint}."
        )
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco.createIndex()
    except (KeyError, TypeError) as exc:
        raise UsageProblem(
            f"COCO annotation file {str(path)!r} has malformed entries (bad or missing field {exc}); {hint}."
        ) from exc
    return coco


def images_folder(coco_root: str | Path) -> Path:
    """The folder holding the COCO image files: `coco_root`, or its `train2017/` or `images/train2017/`."""
    root = Path(coco_root).expanduser()
    if not root.is_dir():
        raise UsageProblem(
            f"COCO image folder {str(root)!r} does not exist; "
            "pass --coco-root pointing to COCO's train2017 images."
        )
    return next((root / sub for sub in IMAGE_SUBFOLDERS if (root / sub).is_dir()), root)


def cut_out(image: np.ndarray, mask: np.ndarray, bbox: list[float]) -> np.ndarray:
    """uint8 RGBA `[h,w,4]`: `image` inside `mask` cropped to the int-truncated COCO `bbox` (x, y, w, h)."""
    x, y, width, height = (int(v) for v in bbox)
    inside = mask[y : y + height, x : x + width].astype(bool)
    if not inside.any():
        raise UnusableImage("empty mask")
    rgba = np.zeros((*inside.shape, 4), dtype=np.uint8)
    rgba[inside, :3] = image[y : y + height, x : x + width][inside]
    rgba[inside, 3] = 255
    return rgba


def largest_instance(coco: COCO, folder: Path, image_id: int, category_id: int) -> np.ndarray:
    """The cut-out of the category's largest-area annotation in one image; `UnusableImage` if none."""
    from PIL import Image

    entry = coco.imgs[image_id]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[category_id], iscrowd=None))
    try:
        annotation = max(annotations, key=lambda ann: ann["area"])
    except (KeyError, TypeError) as exc:
        raise UnusableImage(f"annotation without an area ({exc})") from exc
    try:
        mask = coco.annToMask(annotation)
    except Exception as exc:  # pycocotools raises plain Exception for a segmentation it cannot read
        raise UnusableImage(f"unreadable segmentation ({type(exc).__name__}: {exc})") from exc
    try:
        with Image.open(folder / entry["file_name"]) as picture:
            image = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise UnusableImage("image file missing or unreadable") from exc
    if image.shape[:2] != mask.shape:
        raise UnusableImage("image size differs from its annotation")
    return cut_out(image, mask, annotation["bbox"])


def category_cut_outs(coco: COCO, folder: Path, category: str, n: int) -> tuple[list[np.ndarray], Counter]:
    """The first `n` cut-outs of `category` (COCO name) in image-id order, and the skipped images' reasons."""
    category_ids = coco.getCatIds(catNms=[category])
    if not category_ids:
        known = sorted(cat["name"] for cat in coco.cats.values())
        raise UsageProblem(
            f"COCO category {category!r} is not in the annotation file (it has {len(known)}: "
            f"{', '.join(known[:12])}{', …' if len(known) > 12 else ''}); "
            "pass COCO's instances_train2017.json."
        )
    category_id = category_ids[0]
    cut_outs: list[np.ndarray] = []
    skipped: Counter = Counter()
    candidates = sorted(coco.getImgIds(catIds=[category_id]))
    for image_id in candidates:
        if len(cut_outs) == n:
            break
        try:
            cut_outs.append(largest_instance(coco, folder, image_id, category_id))
        except UnusableImage as exc:
            skipped[str(exc)] += 1
    if skipped:
        warnings.warn(f"COCO {category!r}: skipped {_describe(skipped)}.", stacklevel=2)
    if len(cut_outs) < n:
        raise UsageProblem(
            f"Only {len(cut_outs)} usable COCO images of {category!r} in {str(folder)!r} "
            f"({len(candidates)} annotated{', skipped ' + _describe(skipped) if skipped else ''}); "
            f"--n {n} needs {n}. Use a smaller --n (at most {len(cut_outs)})."
        )
    return cut_outs, skipped


def _describe(skipped: Counter) -> str:
    """E.g. '3 images (2 image file missing or unreadable, 1 empty mask)'."""
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    total = sum(skipped.values())
    return f"{total} image{'' if total == 1 else 's'} ({reasons})"


def coco_objects(
    coco: COCO, folder: Path, n: int
) -> tuple[list[list[np.ndarray]], dict[str, dict[str, int]]]:
    """`n` RGBA cut-outs per object class (in `OBJECTS` order), and per class the skipped images' reasons."""
    objects, skipped = [], {}
    for name in OBJECTS:
        cut_outs, reasons = category_cut_outs(coco, folder, COCO_NAMES[name], n)
        objects.append(cut_outs)
        skipped[name] = dict(reasons)
    return objects, skipped
