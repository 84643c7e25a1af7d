"""The embedded `bam-synth` source: procedural stand-ins for MiniPlaces scenes and COCO objects.

Scenes: each class is one texture in its own two-colour palette (stripes of different orientations and
frequencies, a checkerboard, rings, dots, smooth or fine-grained noise, gradients). Every image draws its
own phase, frequency, orientation and colour jitter plus pixel noise, so a classifier has to learn the
texture, not a pixel value.

Objects: each class is one silhouette (square, triangle, star, disc, …) filled with its own colour and
shading or pattern, inside a dark outline that keeps it visible on every scene. Each instance draws a
small rotation, an aspect ratio and colour jitter. The alpha is exact: 255 on the silhouette, 0 elsewhere.

Scenes and objects are drawn from independent streams and every object is pasted on every scene class, so
an object's colours say nothing about the scene and a scene's texture says nothing about the object.
All randomness comes from the numpy `Generator` passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from attribench_core import derive_seed

from .classes import OBJECTS, SCENES

Colour = tuple[int, int, int]
Pattern = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]
"""(rng, rows, cols) -> intensity in [0,1] of the same shape; rows and cols are coordinates in [0,1)."""
Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(x, y) -> bool: inside the silhouette; x and y are centred coordinates, the shape within about ±1."""
Fill = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]
"""(rng, x, y) -> intensity in [0,1] inside the silhouette (0 = outline colour, 1 = the object's colour)."""

COLOUR_JITTER = 12.0
"""Standard deviation of each palette colour's per-image shift, per channel (0..255 scale)."""
PIXEL_NOISE = 6.0
"""Standard deviation of the per-pixel, per-channel Gaussian noise."""
GAIN_RANGE = (0.85, 1.15)
"""Per-image brightness factor."""
MAX_ROTATION = 15.0
"""Objects turn by up to this many degrees either way (square and diamond stay apart: they differ by 45°)."""
MAX_ASPECT = 1.25
"""Objects stretch horizontally by a factor in [1/MAX_ASPECT, MAX_ASPECT]."""
OBJECT_EXTENT = 1.4
"""The object canvas spans ±OBJECT_EXTENT in shape coordinates, room for any rotated, stretched shape."""
OUTLINE: Colour = (20, 20, 20)


@cache
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre (rows, cols) coordinates in [0,1) of a `size`×`size` image, float32, read-only."""
    line = (np.arange(size, dtype=np.float32) + 0.5) / size
    rows, cols = np.broadcast_to(line[:, None], (size, size)), np.broadcast_to(line[None, :], (size, size))
    return rows, cols


def _wave(
    rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, angle: float, cycles: tuple[float, float]
) -> np.ndarray:
    """A sinusoid in [0,1] varying along `angle` (degrees from the column axis, jittered ±8°) with
    `cycles` (low, high) periods across the image and a random phase."""
    theta = np.deg2rad(angle + rng.uniform(-8, 8))
    along = cols * np.cos(theta) + rows * np.sin(theta)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(*cycles) * along + rng.random()))


def _value_noise(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, cells: int) -> np.ndarray:
    """Smooth noise in [0,1]: a random `cells`×`cells` grid interpolated bilinearly over the image."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    r, c = rows * cells, cols * cells
    r0, c0 = r.astype(np.int64), c.astype(np.int64)
    fr, fc = r - r0, c - c0
    top = grid[r0, c0] * (1 - fc) + grid[r0, c0 + 1] * fc
    bottom = grid[r0 + 1, c0] * (1 - fc) + grid[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _bamboo_stalks(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    stalks = np.clip(1.6 * _wave(rng, rows, cols, 0, (5, 7)) - 0.3, 0, 1)
    return 0.8 * stalks + 0.2 * _value_noise(rng, rows, cols, 3)


def _soft_blobs(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return _value_noise(rng, rows, cols, 3)


def _diagonal_stripes(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return _wave(rng, rows, cols, 45, (4, 6))


def _checker(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    theta = np.deg2rad(rng.uniform(-10, 10))
    cells = rng.uniform(4, 6)
    u = cells * (cols * np.cos(theta) + rows * np.sin(theta)) + rng.random()
    v = cells * (rows * np.cos(theta) - cols * np.sin(theta)) + rng.random()
    return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)


def _rings(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    centre_row, centre_col = rng.uniform(0.2, 0.8, 2)
    radius = np.hypot(rows - centre_row, cols - centre_col)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(4, 6) * radius + rng.random()))


def _grain(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    fine = _value_noise(rng, rows, cols, max(2, rows.shape[0] // 4))
    return 0.7 * fine + 0.3 * rows


def _portholes(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    cells = rng.uniform(3, 4.5)
    u = (cells * cols + rng.random()) % 1 - 0.5
    v = (cells * rows + rng.random()) % 1 - 0.5
    return (np.hypot(u, v) < 0.3).astype(np.float32)


def _horizon(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    line = rng.uniform(0.3, 0.55) + rng.uniform(-0.1, 0.1) * (cols - 0.5)
    ground = (rows > line).astype(np.float32)
    return 0.85 * ground + 0.15 * rows


def _slope_with_speckles(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    slope = 0.35 * np.clip(0.5 * (rows + 1 - cols) + rng.uniform(-0.15, 0.15), 0, 1)
    speckles = rng.random(rows.shape) < rng.uniform(0.01, 0.03)
    return np.where(speckles, 1.0, slope)


def _lane_lines(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (_wave(rng, rows, cols, 90, (5, 8)) > 0.8).astype(np.float32)


SCENE_LOOKS: dict[str, tuple[Pattern, tuple[Colour, Colour]]] = {
    "bamboo_forest": (_bamboo_stalks, ((25, 75, 25), (140, 200, 70))),
    "bedroom": (_soft_blobs, ((185, 120, 110), (245, 215, 180))),
    "bowling_alley": (_diagonal_stripes, ((110, 60, 25), (235, 170, 90))),
    "bus_interior": (_checker, ((30, 45, 120), (165, 165, 175))),
    "cockpit": (_rings, ((20, 20, 28), (60, 190, 200))),
    "corn_field": (_grain, ((150, 120, 15), (245, 225, 100))),
    "laundromat": (_portholes, ((235, 238, 242), (80, 110, 170))),
    "runway": (_horizon, ((140, 185, 235), (75, 75, 80))),
    "ski_slope": (_slope_with_speckles, ((250, 250, 252), (60, 70, 95))),
    "track": (_lane_lines, ((185, 70, 50), (240, 235, 230))),
}
"""Each scene class's texture and palette (the colours at intensity 0 and 1)."""


def _paint(rng: np.random.Generator, intensity: np.ndarray, palette: tuple[Colour, Colour]) -> np.ndarray:
    """uint8 RGB mixing the palette's two colours by `intensity`, with colour jitter, gain and pixel noise."""
    low, high = (np.asarray(colour, np.float32) + rng.normal(0, COLOUR_JITTER, 3) for colour in palette)
    image = (low + intensity[..., None] * (high - low)) * rng.uniform(*GAIN_RANGE)
    image += rng.normal(0, PIXEL_NOISE, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def synth_scene(scene_id: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of scene class `scene_id` (index in `SCENES`), uint8 `[size,size,3]`."""
    pattern, palette = SCENE_LOOKS[SCENES[scene_id]]
    rows, cols = _coords(size)
    return _paint(rng, pattern(rng, rows, cols), palette)


def _disc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) <= 0.9


def _square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(x), np.abs(y)) <= 0.75


def _diamond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(x) + np.abs(y) <= 0.95


def _triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Apex up (y = −0.9), base at y = 0.7."""
    return (y <= 0.7) & (np.abs(x) <= 0.56 * (y + 0.9))


def _star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Five points, one up; the radius runs linearly from 0.4 between the points to 0.95 at their tips."""
    turns = (np.arctan2(y, x) / (2 * np.pi) + 0.25) * 5
    tip_closeness = 1 - 2 * np.abs(turns % 1 - 0.5)
    return np.hypot(x, y) <= 0.4 + 0.55 * tip_closeness


def _ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    radius = np.hypot(x, y)
    return (radius >= 0.5) & (radius <= 0.95)


def _cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    near, far = np.minimum(np.abs(x), np.abs(y)), np.maximum(np.abs(x), np.abs(y))
    return (near <= 0.3) & (far <= 0.9)


def _crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.hypot(x, y) <= 0.9) & (np.hypot(x - 0.45, y) > 0.7)


def _l_shape(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x <= -0.3) | (y >= 0.3)) & (np.abs(x) <= 0.8) & (np.abs(y) <= 0.9)


def _arrow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shaft = (np.abs(y) <= 0.22) & (x >= -0.9) & (x <= 0.1)
    head = (x >= 0.1) & (np.abs(y) <= 1.1 * (0.9 - x))
    return shaft | head


def _shaded(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brightest at the centre, a quarter darker towards the rim."""
    return 1 - 0.25 * np.clip(np.hypot(x, y), 0, 1)


def _striped(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    stripes = np.sin(2 * np.pi * (2.5 * x + rng.random())) > 0
    return np.where(stripes, 1.0, 0.1)


def _spotted(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    u, v = (2 * x + rng.random()) % 1 - 0.5, (2 * y + rng.random()) % 1 - 0.5
    return np.where(np.hypot(u, v) < 0.2, 0.15, _shaded(rng, x, y))


OBJECT_LOOKS: dict[str, tuple[Shape, Fill, Colour]] = {
    "backpack": (_square, _shaded, (210, 45, 45)),
    "bird": (_triangle, _shaded, (245, 215, 30)),
    "dog": (_star, _shaded, (245, 135, 25)),
    "elephant": (_disc, _shaded, (150, 75, 205)),
    "kite": (_diamond, _shaded, (40, 200, 235)),
    "pizza": (_ring, _spotted, (235, 95, 160)),
    "stop_sign": (_cross, _shaded, (45, 195, 110)),
    "toilet": (_crescent, _shaded, (45, 85, 230)),
    "truck": (_l_shape, _shaded, (130, 75, 35)),
    "zebra": (_arrow, _striped, (245, 245, 245)),
}
"""Each object class's silhouette, fill and colour."""


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` shrunk by a (2·radius+1)² square: True where the whole square around a pixel is inside."""
    height, width = mask.shape
    span = 2 * radius + 1
    padded = np.pad(mask, radius, constant_values=False)
    rows = np.logical_and.reduce([padded[d : d + height] for d in range(span)])
    return np.logical_and.reduce([rows[:, d : d + width] for d in range(span)])


def _crop_to(mask: np.ndarray) -> tuple[slice, slice]:
    """The tightest (rows, cols) slices holding every True pixel of a non-empty `mask`."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def synth_object(object_id: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One cut-out of object class `object_id` (index in `OBJECTS`), uint8 RGBA `[h,w,4]` cropped to the
    silhouette, drawn on a `size`×`size` canvas (so h, w ≤ size); alpha is exactly 255 inside, 0 outside."""
    shape, fill, colour = OBJECT_LOOKS[OBJECTS[object_id]]
    rows, cols = _coords(size)
    x, y = (2 * cols - 1) * OBJECT_EXTENT, (2 * rows - 1) * OBJECT_EXTENT
    theta = np.deg2rad(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    stretch = np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT)))
    x, y = (x * np.cos(theta) + y * np.sin(theta)) / stretch, y * np.cos(theta) - x * np.sin(theta)
    inside = shape(x, y)
    body = _erode(inside, max(1, round(size / 24)))
    intensity = np.where(body, fill(rng, x, y), 0.0)
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = _paint(rng, intensity, (OUTLINE, colour))
    rgba[~inside, :3] = 0
    rgba[..., 3] = np.where(inside, 255, 0)
    return rgba[_crop_to(inside)]


def synth_source(seed: int, size: int, n: int) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """`n` scenes per scene class, uint8 `[10,n,size,size,3]`, and `n` cut-outs per object class.

    Each class draws from its own stream, `derive_seed(seed, "bam", "synth", "scene"|"object", name)`, so
    image i of a class does not depend on `n` or on the other classes."""
    scenes = np.empty((len(SCENES), n, size, size, 3), dtype=np.uint8)
    for scene_id, name in enumerate(SCENES):
        rng = np.random.default_rng(derive_seed(seed, "bam", "synth", "scene", name))
        for i in range(n):
            scenes[scene_id, i] = synth_scene(scene_id, rng, size)
    objects = []
    for object_id, name in enumerate(OBJECTS):
        rng = np.random.default_rng(derive_seed(seed, "bam", "synth", "object", name))
        objects.append([synth_object(object_id, rng, size) for _ in range(n)])
    return scenes, objects
