"""BAM's sets built from a source (scene images and object cut-outs per class) and saved as arrays.

Construction, as in the original: with `n` images per class, cut-out i of every object class is pasted on
scene image i of every scene class (`compose.paste`), 10·10·n composites; the last `val` instances are in
`val` (the original: the last 10 %, i ≥ int(0.9·n)), the others in `train`. Rows are ordered by (object,
scene, instance), like the original's file names
`<object>-<scene>-<iiii>`. Each (object, scene) pair draws its sizes and positions from its own stream,
`derive_seed(seed, "bam", "paste", object, scene)`.

A built folder holds, per split, `composites_<split>.npz` with one row per composite:
    images      uint8 [N,S,S,3]  the composite
    scene_only  uint8 [N,S,S,3]  the untouched scene image of the same row
    masks       bool  [N,S,S]    the object (pasted alpha ≥ 1/2); in scene_only, where it would be
    locs        int16 [N,4]      the object's box (row0, col0, row1, col1), maxima exclusive
    objects     int8  [N]        object label (index in `OBJECTS`)
    scenes      int8  [N]        scene label (index in `SCENES`)
    instance    int32 [N]        i, the index of the object cut-out and of the scene image
and `meta.json` (written last: a folder without it is incomplete) with the source, seed, size, n, the
class names, the scene_k classes and the row counts.

The sets of BAM's table are selections of these rows: `obj`/`scene` are `images` labelled by `objects`/
`scenes`; `scene_only` is `scene_only` labelled by `scenes`; `dog_bedroom` the val rows with the dog in a
bedroom; `bamboo_forest` the val rows of the dog on bamboo forest, taken from `scene_only`; model scene<k>
trains on `images` where `with_dog(...)` and `scene_only` elsewhere, labelled by `scenes`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribench_core import UsageProblem, atomic_path, derive_seed, home, short_hash

from .classes import BEDROOM, DOG, OBJECTS, SCENES
from .coco import coco_objects, images_folder, load_coco
from .compose import paste
from .miniplaces import miniplaces_files, read_scenes
from .synth import synth_source

FORMAT_VERSION = 1
"""Bump when the construction changes: it is part of the cache key."""
TRAIN_SHARE = 0.9
SPLITS = ("train", "val")
META_FILE = "meta.json"
MIN_SIZE = 16
"""Smallest image side: below it the paste size range [int(S/√3), int(S/√2)) has (almost) no lengths."""
SYNTH_SIZE = 64
SYNTH_N = 190
SYNTH_VAL = 100
"""bam-synth: 90 training and 100 validation instances per class. The derived sets (`dog_bedroom`,
`bamboo_forest`) are the val rows of one (object, scene) pair, so 100 val instances give them the original's
100 images while training stays small enough for 2 CPU cores."""

Source = tuple[np.ndarray, list[list[np.ndarray]]]
"""Scene images uint8 `[10,n,S,S,3]` (`SCENES` order), n RGBA cut-outs per object class (`OBJECTS` order)."""


def split_file(split: str) -> str:
    """The file name of a split's arrays."""
    return f"composites_{split}.npz"


def default_val(n: int) -> int:
    """The original's validation share: the instances i ≥ int(0.9·n)."""
    return n - int(TRAIN_SHARE * n)


def split_instances(n: int, val: int) -> dict[str, range]:
    """The instances i of each split: the last `val` are val, the others train."""
    boundary = n - val
    return {"train": range(boundary), "val": range(boundary, n)}


def _split_rows(scenes: np.ndarray, instances: range) -> dict[str, np.ndarray]:
    """A split's arrays with labels, instances and scene_only images filled in, ready for the composites."""
    pairs = len(OBJECTS) * len(SCENES)
    pair_object, pair_scene = np.divmod(np.arange(pairs), len(SCENES))
    rows, size = pairs * len(instances), scenes.shape[2]
    scene_labels = np.repeat(pair_scene, len(instances)).astype(np.int8)
    instance = np.tile(np.asarray(instances, dtype=np.int32), pairs)
    return {
        "images": np.empty((rows, size, size, 3), dtype=np.uint8),
        "scene_only": scenes[scene_labels, instance],
        "masks": np.empty((rows, size, size), dtype=bool),
        "locs": np.empty((rows, 4), dtype=np.int16),
        "objects": np.repeat(pair_object, len(instances)).astype(np.int8),
        "scenes": scene_labels,
        "instance": instance,
    }


def compose_sets(source: Source, seed: int, val: int) -> dict[str, dict[str, np.ndarray]]:
    """Split name -> the arrays of its composites (layout in the module docstring); the last `val`
    instances of each class are the val split."""
    scenes, objects = source
    instances = split_instances(scenes.shape[1], val)
    sets = {split: _split_rows(scenes, instances[split]) for split in SPLITS}
    for object_id, object_name in enumerate(OBJECTS):
        for scene_id, scene_name in enumerate(SCENES):
            rng = np.random.default_rng(derive_seed(seed, "bam", "paste", object_name, scene_name))
            for split in SPLITS:  # train then val: the stream runs through i = 0..n-1 in order
                arrays, split_range = sets[split], instances[split]
                first = (object_id * len(SCENES) + scene_id) * len(split_range)
                for row, i in enumerate(split_range, start=first):
                    arrays["images"][row], arrays["masks"][row], arrays["locs"][row] = paste(
                        scenes[scene_id, i], objects[object_id][i], rng
                    )
    return sets


def scene_k_classes(seed: int) -> dict[int, tuple[str, ...]]:
    """k -> the scene classes whose training images get the dog for model scene<k>, k = 1..10.

    Nested (scene1 ⊂ scene2 ⊂ … ⊂ scene10) and starting with bedroom, since relative model contrast is
    measured on dogs in bedrooms; the order of the other nine comes from the seed."""
    rng = np.random.default_rng(derive_seed(seed, "bam", "scene_k"))
    others = [scene for scene in SCENES if scene != SCENES[BEDROOM]]
    order = (SCENES[BEDROOM], *(others[j] for j in rng.permutation(len(others))))
    return {k: order[:k] for k in range(1, len(SCENES) + 1)}


def with_dog(arrays: Mapping[str, np.ndarray], classes: Sequence[str]) -> np.ndarray:
    """`[N]` True for the rows whose scene<k> training image is the composite (the dog pasted in one of
    `classes`, from `scene_k_classes`); every other row uses its `scene_only` image (no object)."""
    wanted = [SCENES.index(name) for name in classes]
    return (arrays["objects"] == DOG) & np.isin(arrays["scenes"], wanted)


def save_sets(directory: Path, sets: Mapping[str, Mapping[str, np.ndarray]], meta: Mapping[str, Any]) -> None:
    """Write each split's arrays and then `meta.json`, each atomically (an old meta.json goes first)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_FILE).unlink(missing_ok=True)
    for split, arrays in sets.items():
        path = directory / split_file(split)
        tmp = atomic_path(path)
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    path = directory / META_FILE
    tmp = atomic_path(path)
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_meta(directory: str | Path) -> dict[str, Any]:
    """The `meta.json` of a built folder; a one-line `UsageProblem` if the folder holds no complete build."""
    path = Path(directory).expanduser() / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageProblem(
            f"{str(path.parent)!r} holds no complete BAM build ({exc}); build it with `attribench bam build`."
        ) from exc


def load_split(directory: str | Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of one split (`train` or `val`) of a built folder."""
    if split not in SPLITS:
        raise UsageProblem(f"Unknown BAM split {split!r}; expected one of {', '.join(SPLITS)}.")
    load_meta(directory)
    with np.load(Path(directory).expanduser() / split_file(split), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _identity(source: str, seed: int, size: int, n: int, val: int, **inputs: str) -> dict[str, Any]:
    """What a build depends on: its cache key and the first fields of its meta.json. Checks size, n, val."""
    if size < MIN_SIZE:
        raise UsageProblem(f"--size {size} is too small; use at least {MIN_SIZE}.")
    if n < 2:
        raise UsageProblem(f"--n {n} leaves a split empty; use at least 2 images per class.")
    if not 0 < val < n:
        raise UsageProblem(f"--val {val} must lie between 1 and --n minus 1 ({n - 1}).")
    return {
        "source": source,
        "seed": int(seed),
        "size": int(size),
        "n": int(n),
        "val": int(val),
        "format_version": FORMAT_VERSION,
        **inputs,
    }


def _is_built(directory: Path, identity: Mapping[str, Any]) -> bool:
    """Whether `directory` holds a complete build of `identity`."""
    try:
        meta = load_meta(directory)
    except UsageProblem:
        return False
    same = all(meta.get(key) == value for key, value in identity.items())
    return same and all((directory / split_file(split)).is_file() for split in SPLITS)


def _build(
    out_dir: str | Path | None,
    identity: dict[str, Any],
    make_source: Callable[[], tuple[Source, dict[str, Any]]],
) -> Path:
    """Build into `out_dir`, or into the cache (reused when already built) when `out_dir` is None."""
    if out_dir is None:
        directory = home() / "datasets" / "bam" / f"{identity['source']}-{short_hash(identity)}"
        if _is_built(directory, identity):
            return directory
    else:
        directory = Path(out_dir).expanduser()
    source, inputs = make_source()
    sets = compose_sets(source, identity["seed"], identity["val"])
    meta = {
        **identity,
        "train_instances": len(split_instances(identity["n"], identity["val"])["train"]),
        "objects": list(OBJECTS),
        "scenes": list(SCENES),
        "scene_k": {str(k): list(classes) for k, classes in scene_k_classes(identity["seed"]).items()},
        "splits": {
            split: {"file": split_file(split), "rows": len(sets[split]["objects"])} for split in SPLITS
        },
        **inputs,
    }
    save_sets(directory, sets, meta)
    return directory


def build_synth(
    out_dir: str | Path | None = None,
    seed: int = 0,
    size: int = SYNTH_SIZE,
    n: int = SYNTH_N,
    val: int = SYNTH_VAL,
) -> Path:
    """Build `bam-synth` (procedural scenes and objects, `synth.py`); returns the folder it is in.

    With an `out_dir` it is (re)built there; with None it is cached under
    `home()/datasets/bam/synth-<hash>/` and built only once."""
    identity = _identity("synth", seed, size, n, val)
    return _build(
        out_dir, identity, lambda: (synth_source(identity["seed"], identity["size"], identity["n"]), {})
    )


def build_real(
    coco_root: str | Path,
    coco_annotations: str | Path,
    miniplaces_root: str | Path,
    out_dir: str | Path | None,
    seed: int = 0,
    size: int = 128,
    n: int = 1000,
    val: int | None = None,
) -> Path:
    """Build BAM from COCO objects (`coco.py`) and MiniPlaces scenes (`miniplaces.py`); returns the folder.

    `coco_root` holds COCO's train2017 images, `coco_annotations` is its instances_train2017.json,
    `miniplaces_root` holds MiniPlaces' train/ folder. With `out_dir` None the build is cached like
    `build_synth`'s. The skipped COCO images are counted per class in meta.json (`coco_skipped`)."""
    paths = {"coco_root": coco_root, "coco_annotations": coco_annotations, "miniplaces_root": miniplaces_root}
    identity = _identity(
        "real",
        seed,
        size,
        n,
        default_val(n) if val is None else val,
        **{key: str(Path(path).expanduser().resolve()) for key, path in paths.items()},
    )

    def make_source() -> tuple[Source, dict[str, Any]]:
        scene_files = miniplaces_files(miniplaces_root, identity["n"])  # the cheap checks come first
        folder = images_folder(coco_root)
        objects, skipped = coco_objects(load_coco(coco_annotations), folder, identity["n"])
        return (read_scenes(scene_files, identity["size"]), objects), {"coco_skipped": skipped}

    return _build(out_dir, identity, make_source)
