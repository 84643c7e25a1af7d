"""Pasting an object cut-out onto a scene: BAM's recipe, shared by the real and the synthetic source.

- Size: the object's relatively longer side (its height against the scene's height, or its width against
  the scene's width) is resized to an integer length drawn uniformly from [int(S/√3), int(S/√2)) of that
  scene side S (for S=128: [73, 90) px), so that its box covers roughly 1/3 to 1/2 of the scene; the other
  side follows the aspect ratio (rounded, at least 1 px).
- Resizing: Pillow's bilinear resize of the RGBA cut-out (Pillow premultiplies alpha, so transparent
  pixels do not bleed their colour into the edge); its alpha edges become soft.
- Position: the top-left corner is uniform among the positions that keep the object fully inside.
- Compositing: composite = alpha·object + (1 − alpha)·scene, rounded to uint8; the object's mask is where
  the resized alpha is at least 1/2, and its location is the box of the resized cut-out.

All randomness comes from the numpy `Generator` passed in (drawn in this order: size, row, column).
"""

from __future__ import annotations

import math

import numpy as np

OPAQUE = 255

Loc = tuple[int, int, int, int]
"""(row0, col0, row1, col1) of an object's box in the composite, the maxima exclusive."""


def size_range(side: int) -> tuple[int, int]:
    """[low, high) of the pasted object's longer side on a scene side of `side` px."""
    return int(side / math.sqrt(3)), int(side / math.sqrt(2))


def pasted_shape(
    object_shape: tuple[int, int], scene_shape: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int]:
    """(height, width) of the pasted object: its relatively longer side drawn from `size_range`."""
    (height, width), (scene_height, scene_width) = object_shape, scene_shape
    if height / scene_height >= width / scene_width:
        new_height = int(rng.integers(*size_range(scene_height)))
        return new_height, max(1, round(width * new_height / height))
    new_width = int(rng.integers(*size_range(scene_width)))
    return max(1, round(height * new_width / width)), new_width


def resize_rgba(rgba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The uint8 RGBA cut-out `[h,w,4]` resized bilinearly to `shape` (height, width)."""
    from PIL import Image

    height, width = shape
    resized = Image.fromarray(rgba, "RGBA").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def blend(scene: np.ndarray, rgba: np.ndarray, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene with `rgba` alpha-composited at (`top`, `left`), and the object's mask (alpha ≥ 1/2)."""
    height, width = rgba.shape[:2]
    composite = scene.copy()
    window = composite[top : top + height, left : left + width]
    alpha = rgba[..., 3:].astype(np.float32) / OPAQUE
    window[...] = np.rint(alpha * rgba[..., :3] + (1 - alpha) * window).astype(np.uint8)
    mask = np.zeros(scene.shape[:2], dtype=bool)
    mask[top : top + height, left : left + width] = alpha[..., 0] >= 0.5
    return composite, mask


def paste(
    scene: np.ndarray, object_rgba: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, Loc]:
    """BAM's composite of a uint8 scene `[S,S,3]` and object cut-out `[h,w,4]`: (image, mask, loc)."""
    scene_height, scene_width = scene.shape[:2]
    height, width = pasted_shape(object_rgba.shape[:2], (scene_height, scene_width), rng)
    top = int(rng.integers(0, scene_height - height + 1))
    left = int(rng.integers(0, scene_width - width + 1))
    composite, mask = blend(scene, resize_rgba(object_rgba, (height, width)), top, left)
    return composite, mask, (top, left, top + height, left + width)
