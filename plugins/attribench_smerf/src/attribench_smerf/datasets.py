"""The TextBox datasets of SMERF's seven reasoning settings: generated, ground-truthed and cached.

Samples are stored bucket by bucket in increasing bucket id (shuffle when training). Each bucket is drawn
from its own seed, `derive_seed(seed, "smerf", setting, split, preset, background, bucket)`, and the arrays
are cached under `ATTRIBENCH_HOME/datasets/smerf/<setting>/<hash>.npz` (uint8 images and object boxes; the
masks are rebuilt from the boxes on load).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from attribench_core import ArrayDataset, UsageProblem, cached_arrays, derive_seed, short_hash

from . import textbox
from .settings import PRESETS, SETTINGS, BucketSpec, bucket_counts, bucket_objects, bucket_specs, choose

FORMAT_VERSION = 1
"""Bump when the drawing changes: it is part of the cache key."""


class SmerfDataset(ArrayDataset):
    """TextBox images of one setting: regions `box1`, `box2`, `text`; roles and `meta["bucket"]` per sample.

    `buckets` `[N]` holds each sample's bucket id and `boxes` `[N,3,4]` its objects' (top, left, bottom,
    right) boxes in `REGIONS` order (all 0 where absent), e.g. for box-based metrics.
    """

    num_classes = 2
    class_names = ("0", "1")

    def __init__(
        self, images: np.ndarray, arrays: dict[str, np.ndarray], setting: str, split: str, source: str = ""
    ) -> None:
        specs: dict[int, BucketSpec] = bucket_specs(setting)
        buckets = arrays["buckets"].astype(np.int64)
        roles = {b: spec.roles for b, spec in specs.items()}
        super().__init__(
            images,
            arrays["labels"],
            textbox.box_masks(arrays["boxes"]),
            roles=[roles[int(b)] for b in buckets],
            meta=[{"bucket": int(b)} for b in buckets],
            split=split,
        )
        self.setting = setting
        self.source = source
        self.buckets = buckets
        self.boxes = arrays["boxes"].astype(np.int64)
        self.specs = specs


def _generate(
    setting: str,
    split: str,
    preset: str,
    background: str,
    seed: int,
    counts: dict[int, int],
    files: list[Path],
) -> dict[str, np.ndarray]:
    """Every bucket's images, labels, bucket ids and boxes, concatenated in bucket order."""
    pictures = textbox.load_pictures(files) if files else None
    specs = bucket_specs(setting)
    parts = []
    for bucket, n in sorted(counts.items()):
        objects = bucket_objects(bucket)
        rng = np.random.default_rng(derive_seed(seed, "smerf", setting, split, preset, background, bucket))
        images, boxes = textbox.draw(
            rng,
            np.full(n, objects.box1),
            np.full(n, objects.box2),
            np.full(n, objects.text),
            background,
            pictures,
        )
        parts.append((images, boxes, np.full(n, specs[bucket].label), np.full(n, bucket)))
    images, boxes, labels, buckets = (np.concatenate(column) for column in zip(*parts, strict=True))
    return {
        "images": images,
        "boxes": boxes.astype(np.int16),
        "labels": labels.astype(np.int64),
        "buckets": buckets.astype(np.int8),
    }


def make_textbox(
    split: str = "test",
    seed: int = 0,
    setting: str = "simple_fr",
    preset: str = "default",
    background: str = "black",
    background_dir: str | Path | None = None,
) -> SmerfDataset:
    """The TextBox dataset of `setting` for `split` ("train", or "test" = the paper's validation split).

    `preset` sets the images per bucket (`settings.PRESETS`: paper, default, tiny); `background` is
    black, noise or natural (pictures from `background_dir`).
    """
    setting = choose("setting", setting, SETTINGS)
    split = choose("split", split, ("train", "test"))
    preset = choose("preset", preset, PRESETS)
    background = choose("background", background, textbox.BACKGROUNDS)
    if background == "natural":
        files = textbox.background_files(background_dir)
        digest = textbox.files_digest(files)
    elif background_dir is not None:
        raise UsageProblem(f"background_dir is only used with background='natural', not {background!r}.")
    else:
        files, digest = [], None
    counts = bucket_counts(setting, split, preset)
    identity = {
        "setting": setting,
        "split": split,
        "seed": int(seed),
        "preset": preset,
        "counts": {str(b): n for b, n in counts.items()},
        "background": background,
        "background_files": digest,
        "version": FORMAT_VERSION,
    }
    arrays = cached_arrays(
        f"datasets/smerf/{setting}/{short_hash(identity)}.npz",
        lambda: _generate(setting, split, preset, background, int(seed), counts, files),
    )
    images = arrays["images"].astype(np.float32)
    images /= textbox.WHITE
    return SmerfDataset(images, arrays, setting, split, source(preset, background))


def source(preset: str, background: str) -> str:
    """The one-line description printed with every result (the same for all seven settings, since a run
    may use several)."""
    return (
        "smerf: TextBox images generated here after Kim, Plumb & Talwalkar 2022 (SMERF; our text rendering, "
        f"{preset} preset, {background} background), not the paper's files"
    )


# One factory per setting, for registration as lazy targets (`"attribench_smerf.datasets:simple_fr"`).
simple_fr = partial(make_textbox, setting="simple_fr")
simple_nr = partial(make_textbox, setting="simple_nr")
complex_fr = partial(make_textbox, setting="complex_fr")
complex_cr1 = partial(make_textbox, setting="complex_cr1")
complex_cr2 = partial(make_textbox, setting="complex_cr2")
complex_cr3 = partial(make_textbox, setting="complex_cr3")
complex_cr4 = partial(make_textbox, setting="complex_cr4")
