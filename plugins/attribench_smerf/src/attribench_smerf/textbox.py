"""Drawing TextBox images: white Box1 (10×10), Box2 (4×4) and a letter ('A'/'B') on a 64×64 background.

Choices the paper leaves open (the original code's behaviour in brackets):
- Font: DejaVu Sans at 20 px, the TrueType file bundled with matplotlib (never a system font) [Arial 20].
  Its 'A' inks 14×15 px, as Arial-20 does. Glyphs are drawn anti-aliased by Pillow, once per process.
- Text region: the bounding box of the pixels the glyph actually inks, as placed [Pillow's `getsize` box,
  which includes ~4 empty rows above the letter].
- Placement: every present object lies fully inside the image, its top-left uniform among the positions
  that keep it there; a whole image is redrawn until no two objects' rectangles come closer than `MARGIN`
  pixels (a real rectangle test, so at least `MARGIN` background pixels separate any two objects) [a
  corner-distance test that lets a box touch or overlap the letter]. Redrawing the whole image keeps the
  positions uniform over the valid layouts.
- Images are made as uint8 (as the original did) and scaled to [0,1] by the dataset.

Backgrounds: `black`; `noise` (each pixel and channel uniform in 0..150 of 255, paper B.8); `natural` (a
random picture from a user folder of .jpg/.png files, resized to 64×64 bilinear, brightness ×0.7, paper B.9).
All randomness comes from the numpy `Generator` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from attribench_core import UsageProblem, short_hash

from .settings import LETTERS, REGIONS

SIDE = 64
BOX1 = 10
BOX2 = 4
FONT_SIZE = 20
MARGIN = 2
"""Minimum number of background pixels between the rectangles of any two objects (in rows or columns)."""
WHITE = 255
BACKGROUNDS = ("black", "noise", "natural")
NOISE_MAX = 150
NATURAL_BRIGHTNESS = 0.7
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_REDRAWS = 10_000


def font_path() -> Path:
    """matplotlib's bundled DejaVuSans.ttf."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's bundled font {path} is missing; reinstall matplotlib")
    return path


@cache
def glyph(letter: str) -> np.ndarray:
    """The letter's anti-aliased ink, uint8 coverage `[h,w]` cropped to the pixels it touches."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path()), FONT_SIZE)
    canvas = Image.new("L", (3 * FONT_SIZE, 3 * FONT_SIZE))
    ImageDraw.Draw(canvas).text((FONT_SIZE, FONT_SIZE), letter, fill=WHITE, font=font)
    ink = canvas.crop(canvas.getbbox())
    out = np.asarray(ink, dtype=np.uint8).copy()
    out.flags.writeable = False
    return out


def object_sizes(box1: np.ndarray, box2: np.ndarray, text: np.ndarray) -> np.ndarray:
    """`[N,3,2]` (height, width) of box1, box2 and the text in each image; 0×0 where absent."""
    sizes = np.zeros((len(text), len(REGIONS), 2), dtype=np.int64)
    sizes[np.asarray(box1, bool), 0] = BOX1
    sizes[np.asarray(box2, bool), 1] = BOX2
    for code in (1, 2):
        sizes[np.asarray(text) == code, 2] = glyph(LETTERS[code]).shape
    return sizes


def too_close(corner: np.ndarray, sizes: np.ndarray, margin: int = MARGIN) -> np.ndarray:
    """`[N]` True where two present objects' rectangles (`corner`/`sizes` `[N,3,2]`) are < `margin` apart."""
    end = corner + sizes
    present = (sizes > 0).all(axis=2)
    bad = np.zeros(len(corner), dtype=bool)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        apart = (end[:, i] + margin <= corner[:, j]) | (end[:, j] + margin <= corner[:, i])
        bad |= present[:, i] & present[:, j] & ~apart.any(axis=1)
    return bad


def place(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """`[N,3,4]` boxes (top, left, bottom, right; half-open; all 0 where absent) of a random valid layout."""
    corner = np.zeros_like(sizes)
    todo = np.arange(len(sizes))
    for _ in range(MAX_REDRAWS):
        if not todo.size:
            break
        corner[todo] = rng.integers(0, SIDE - sizes[todo] + 1)
        todo = todo[too_close(corner[todo], sizes[todo])]
    else:  # pragma: no cover - the objects always fit with room to spare
        raise RuntimeError(f"could not place the objects of {todo.size} images without overlap")
    corner[sizes == 0] = 0
    return np.concatenate([corner, corner + sizes], axis=2)


def box_masks(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Region name -> `[N,H,W]` bool mask of each object's box (all False where absent)."""
    line = np.arange(SIDE)[None, :]
    out = {}
    for k, name in enumerate(REGIONS):
        top, left, bottom, right = (boxes[:, k, c, None] for c in range(4))
        rows, cols = (line >= top) & (line < bottom), (line >= left) & (line < right)
        out[name] = rows[:, :, None] & cols[:, None, :]
    return out


def background_files(folder: str | Path | None) -> list[Path]:
    """The .jpg/.png files of a natural-background folder (sorted), or a one-line `UsageProblem`."""
    if folder is None:
        raise UsageProblem("background='natural' needs background_dir, a folder of .jpg/.png pictures.")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UsageProblem(f"Background folder {str(path)!r} does not exist or is not a folder.")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageProblem(f"Background folder {str(path)!r} holds no .jpg/.jpeg/.png images.")
    return files


def files_digest(files: Sequence[Path]) -> str:
    """A hash of the files' names and sizes: a changed background folder gives a new dataset."""
    return short_hash([(p.name, p.stat().st_size) for p in files], length=16)


def load_pictures(files: Sequence[Path]) -> np.ndarray:
    """The pictures as uint8 `[K,3,64,64]`: RGB, resized bilinearly, brightness ×0.7 (paper B.9)."""
    from PIL import Image, ImageEnhance, UnidentifiedImageError

    out = np.empty((len(files), 3, SIDE, SIDE), dtype=np.uint8)
    for k, path in enumerate(files):
        try:
            with Image.open(path) as picture:
                small = picture.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError) as exc:
            raise UsageProblem(f"Background picture {str(path)!r} cannot be read ({exc}).") from exc
        dark = ImageEnhance.Brightness(small).enhance(NATURAL_BRIGHTNESS)
        out[k] = np.asarray(dark, dtype=np.uint8).transpose(2, 0, 1)
    return out


def backgrounds(
    rng: np.random.Generator, n: int, kind: str, pictures: np.ndarray | None = None
) -> np.ndarray:
    """`n` backgrounds, uint8 `[n,3,64,64]`; `pictures` (from `load_pictures`) is needed for `natural`."""
    shape = (n, 3, SIDE, SIDE)
    if kind == "black":
        return np.zeros(shape, dtype=np.uint8)
    if kind == "noise":
        # drawn as uint16 (numpy samples bounded uint8 several times slower), same uniform values
        return rng.integers(0, NOISE_MAX + 1, shape, dtype=np.uint16).astype(np.uint8)
    if kind == "natural":
        if pictures is None or not len(pictures):
            raise ValueError("the natural background needs pictures (see load_pictures)")
        return pictures[rng.integers(0, len(pictures), n)]
    raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")


def stamp_text(images: np.ndarray, boxes: np.ndarray, text: np.ndarray) -> None:
    """Blend the white letters into `images` (uint8 `[N,3,H,W]`, in place) at their text boxes."""
    channels = np.arange(3)[None, :, None, None]
    for code in (1, 2):
        (idx,) = np.nonzero(text == code)
        if not idx.size:
            continue
        ink = glyph(LETTERS[code]).astype(np.float32) / WHITE
        h, w = ink.shape
        rows = (boxes[idx, 2, 0, None] + np.arange(h))[:, None, :, None]
        cols = (boxes[idx, 2, 1, None] + np.arange(w))[:, None, None, :]
        at = (idx[:, None, None, None], channels, rows, cols)
        under = images[at].astype(np.float32)
        images[at] = np.rint(under + (WHITE - under) * ink).astype(np.uint8)


def draw(
    rng: np.random.Generator,
    box1: np.ndarray,
    box2: np.ndarray,
    text: np.ndarray,
    background: str = "black",
    pictures: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 `[N,3,64,64]` and their object boxes `[N,3,4]` for per-image objects (`text`: 0/1/2)."""
    text = np.asarray(text, dtype=np.int64)
    boxes = place(rng, object_sizes(box1, box2, text))
    images = backgrounds(rng, len(text), background, pictures)
    masks = box_masks(boxes)
    boxes_white = (masks["box1"] | masks["box2"]).astype(np.uint8) * np.uint8(WHITE)
    np.maximum(images, boxes_white[:, None], out=images)  # white is the maximum: paints the boxes
    stamp_text(images, boxes, text)
    return images, boxes
