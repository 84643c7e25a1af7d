"""The `bamboo_forest_patch` set: the `bamboo_forest` scenes with a functionally insignificant patch inside
the dog's silhouette, optimised against the `scene_only` model (`patch.py`), for the input independence
rate (IIR).

The set depends on a model, so its factory obtains the `bam.scene_only` weights exactly as a run does
(same cache key: trained once, shared) and caches the patched images under `ATTRIBENCH_HOME`, keyed by the
data and those weights. Every row is kept, so that row i of both sets is the same scene; each row's meta
records the logit distance ‖f(x+δ) − f(x)‖₂ and whether the prediction is unchanged. IIR counts only the
functionally insignificant ones (`patch.select_insignificant`; Yang & Kim 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attribench_core import cached_arrays, obtain_model, short_hash, training_data

from . import datasets
from .build import SYNTH_N, SYNTH_SIZE, SYNTH_VAL
from .models import SceneOnlyModel
from .patch import optimise_patch

PATCH_VERSION = 1
"""Bump when the patch recipe changes: it is part of the cache key."""


def bamboo_forest_patch(
    split: str = "test",
    seed: int = 0,
    data_root: str = "",
    size: int = SYNTH_SIZE,
    n: int = SYNTH_N,
    val: int = SYNTH_VAL,
) -> datasets.BamDataset:
    """`bamboo_forest` with each scene patched inside the dog's mask (see the module docstring)."""
    options = {"data_root": data_root, "size": size, "n": n, "val": val}
    clean = datasets.bamboo_forest(split, seed, **options)
    loaded = obtain_model(
        SceneOnlyModel(),
        "bam.scene_only",
        lambda part: datasets.scene_only(part, seed, **options),
        data_key=training_data("bam.scene_only", options),
        seed=seed,
    )
    folder = datasets.data_folder(data_root, seed, size, n, val)
    identity = {"data": str(folder), "split": split, "weights": loaded.weights_hash, "v": PATCH_VERSION}
    key = short_hash(identity)
    arrays = cached_arrays(f"datasets/bam/patch-{key}.npz", lambda: _patch(loaded.module, clean))
    clean.images = arrays["images"]
    clean.meta = [
        {"row": int(r), "logit_distance": float(d), "prediction_unchanged": bool(u)}
        for r, d, u in zip(clean.rows, arrays["logit_distance"], arrays["prediction_unchanged"], strict=True)
    ]
    return clean


def _patch(module: torch.nn.Module, clean: datasets.BamDataset) -> dict[str, Any]:
    """Optimise the patches: δ starts where the original's did, at the dog pasted in (the composite)."""
    index = np.arange(len(clean))
    batch = clean.batch(index)
    init = clean.composite(index)
    result = optimise_patch(module.eval(), batch.images, batch.regions["object"], init=init)
    return {
        "images": result.patched.numpy().astype(np.float32),
        "logit_distance": result.logit_distance.numpy(),
        "prediction_unchanged": result.prediction_unchanged.numpy(),
    }
