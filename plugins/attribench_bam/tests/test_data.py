"""BAM data: the paste recipe, the procedural bam-synth source, and the sets built from a source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from attribench_bam import build, compose, synth
from attribench_bam.classes import BEDROOM, COCO_NAMES, DOG, MINIPLACES_FOLDERS, OBJECTS, SCENES

from attribench_core.errors import UsageProblem

SIZE = 32
N = 3
VAL = 1  # the last instance of each class is val, as int(0.9·3) = 2 in the original


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("ATTRIBENCH_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.build_synth(tmp_path_factory.mktemp("bam") / "synth", seed=7, size=SIZE, n=N, val=VAL)


def opaque(height: int, width: int, colour: int = 200) -> np.ndarray:
    rgba = np.full((height, width, 4), colour, dtype=np.uint8)
    rgba[..., 3] = 255
    return rgba


# ---- classes -------------------------------------------------------------------------------------------


def test_class_names_and_the_names_of_the_real_data():
    assert list(OBJECTS) == sorted(OBJECTS)
    assert list(SCENES) == sorted(SCENES)
    assert (OBJECTS[DOG], SCENES[BEDROOM]) == ("dog", "bedroom")
    assert COCO_NAMES["stop_sign"] == "stop sign" and COCO_NAMES["dog"] == "dog"
    assert MINIPLACES_FOLDERS["track"] == "track/outdoor" and MINIPLACES_FOLDERS["bedroom"] == "bedroom"


# ---- compose -------------------------------------------------------------------------------------------


def test_size_range_is_the_originals():
    assert compose.size_range(128) == (73, 90)
    assert compose.size_range(64) == (36, 45)


@pytest.mark.parametrize("shape", [(40, 40), (50, 20), (12, 60), (7, 9)])
def test_paste_sizes_the_relatively_longer_side_and_keeps_the_object_inside(shape: tuple[int, int]):
    scene = np.zeros((64, 64, 3), dtype=np.uint8)
    height, width = shape
    low, high = compose.size_range(64)
    rng = np.random.default_rng(0)
    longer_sides, tops = set(), set()
    for _ in range(300):
        _, mask, (row0, col0, row1, col1) = compose.paste(scene, opaque(height, width), rng)
        new_height, new_width = row1 - row0, col1 - col0
        longer, shorter, ratio = (
            (new_height, new_width, width / height)
            if height >= width
            else (new_width, new_height, height / width)
        )
        assert low <= longer < high
        assert shorter == max(1, round(longer * ratio))
        assert min(row0, col0) >= 0 and max(row1, col1) <= 64
        box = np.zeros_like(mask)
        box[row0:row1, col0:col1] = True
        np.testing.assert_array_equal(mask, box)  # an opaque object fills its box
        longer_sides.add(longer)
        tops.add(row0)
    assert longer_sides == set(range(low, high))  # every length of the range occurs
    assert len(tops) > 10


def test_paste_on_a_wide_scene_compares_sides_relatively():
    scene = np.zeros((64, 128, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    # 40/64 (height) > 60/128 (width): the height is the relatively longer side
    _, _, (row0, _, row1, _) = compose.paste(scene, opaque(40, 60), rng)
    assert compose.size_range(64)[0] <= row1 - row0 < compose.size_range(64)[1]


def test_mask_is_the_resized_alpha_at_its_location():
    yy, xx = np.mgrid[:30, :30]
    disc = opaque(30, 30)
    disc[..., 3] = np.where(np.hypot(yy - 14.5, xx - 14.5) < 14, 255, 0)
    scene = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    composite, mask, (row0, col0, row1, col1) = compose.paste(scene, disc, np.random.default_rng(3))
    # the same draws again: the size, then the position
    shape = compose.pasted_shape(disc.shape[:2], (64, 64), np.random.default_rng(3))
    assert (row1 - row0, col1 - col0) == shape
    alpha = compose.resize_rgba(disc, shape)[..., 3]
    np.testing.assert_array_equal(mask[row0:row1, col0:col1], alpha >= 128)
    assert mask.sum() == (alpha >= 128).sum() > 0  # nothing outside the box
    outside = np.ones_like(mask)
    outside[row0:row1, col0:col1] = False
    np.testing.assert_array_equal(composite[outside], scene[outside])
    assert (composite[mask] != scene[mask]).any()


def test_blend_by_hand():
    scene = np.full((4, 4, 3), 100, dtype=np.uint8)
    rgba = np.full((2, 2, 4), 200, dtype=np.uint8)
    rgba[..., 3] = [[255, 0], [128, 64]]
    composite, mask = compose.blend(scene, rgba, 1, 2)
    # 128/255·200 + 127/255·100 = 150.2; 64/255·200 + 191/255·100 = 125.1
    expected = np.full((4, 4), 100)
    expected[1:3, 2:4] = [[200, 100], [150, 125]]
    np.testing.assert_array_equal(composite, np.repeat(expected[..., None], 3, axis=2))
    expected_mask = np.zeros((4, 4), dtype=bool)
    expected_mask[1, 2] = expected_mask[2, 2] = True  # alpha 128/255 ≥ 1/2, 64/255 is not
    np.testing.assert_array_equal(mask, expected_mask)
    assert scene[1, 2, 0] == 100  # the scene itself is untouched


# ---- synth ---------------------------------------------------------------------------------------------


def test_synth_is_deterministic_from_the_seed():
    scenes, objects = synth.synth_source(5, SIZE, 2)
    again_scenes, again_objects = synth.synth_source(5, SIZE, 2)
    other_scenes, other_objects = synth.synth_source(6, SIZE, 2)
    np.testing.assert_array_equal(scenes, again_scenes)
    for mine, again in zip(objects, again_objects, strict=True):
        for rgba, same in zip(mine, again, strict=True):
            np.testing.assert_array_equal(rgba, same)
    assert scenes.shape == (10, 2, SIZE, SIZE, 3) and scenes.dtype == np.uint8
    assert not np.array_equal(scenes, other_scenes)
    assert not all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(objects[0], other_objects[0], strict=True)
    )


def texture_features(images: np.ndarray) -> np.ndarray:
    """Per image: mean and spread of each channel, and the mean change from pixel to pixel along rows,
    columns and both diagonals (stripes of different orientations differ here)."""
    x = images.astype(np.float64)
    steps = [
        np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3)),
        np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)),
        np.abs(x[:, 1:, 1:] - x[:, :-1, :-1]).mean(axis=(1, 2, 3)),
        np.abs(x[:, 1:, :-1] - x[:, :-1, 1:]).mean(axis=(1, 2, 3)),
    ]
    return np.column_stack([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), *steps])


def nearest_centroid_accuracy(train: list[np.ndarray], test: list[np.ndarray]) -> float:
    """Accuracy on `test` (`[k,features]` per class) of the nearest class mean of `train`."""
    centroids = np.stack([t.mean(axis=0) for t in train])
    hits = [
        (np.linalg.norm(t[:, None] - centroids[None], axis=2).argmin(axis=1) == label).mean()
        for label, t in enumerate(test)
    ]
    return float(np.mean(hits))


def test_synth_scene_classes_differ_in_colour_and_texture():
    rng = np.random.default_rng(0)
    draw = [np.stack([synth.synth_scene(s, rng, 64) for _ in range(16)]) for s in range(len(SCENES))]
    scale = np.concatenate([texture_features(images) for images in draw]).std(axis=0)
    train = [texture_features(images[:8]) / scale for images in draw]
    test = [texture_features(images[8:]) / scale for images in draw]
    assert nearest_centroid_accuracy(train, test) >= 0.95
    # and each class varies from image to image
    assert all(np.abs(images[0].astype(int) - images[1]).mean() > 5 for images in draw)


def test_synth_objects_have_exact_masks_and_differ_by_class():
    from PIL import Image

    rng = np.random.default_rng(0)
    silhouettes = []
    for object_id in range(len(OBJECTS)):
        rows = []
        for _ in range(12):
            rgba = synth.synth_object(object_id, rng, 64)
            alpha = rgba[..., 3]
            assert rgba.dtype == np.uint8 and rgba.shape[2] == 4 and max(rgba.shape[:2]) <= 64
            assert set(np.unique(alpha)) <= {0, 255}
            assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()  # tight
            assert not rgba[alpha == 0, :3].any()
            small = Image.fromarray(alpha).resize((24, 24), Image.Resampling.BILINEAR)
            rows.append(np.asarray(small, dtype=float).ravel() / 255)
        silhouettes.append(np.asarray(rows))
    # the silhouettes alone tell the classes apart, whatever the rotation and aspect of each instance
    assert nearest_centroid_accuracy([s[:6] for s in silhouettes], [s[6:] for s in silhouettes]) >= 0.95


def test_synth_generation_is_fast():
    import time

    start = time.perf_counter()
    synth.synth_source(0, 64, 20)
    assert time.perf_counter() - start < 5  # 400 images; the default build draws 2000


# ---- build ---------------------------------------------------------------------------------------------


def test_build_layout_counts_and_split(built: Path):
    meta = build.load_meta(built)
    train_n = int(0.9 * N)
    assert meta["source"] == "synth" and (meta["seed"], meta["size"], meta["n"]) == (7, SIZE, N)
    assert meta["train_instances"] == train_n
    assert meta["objects"] == list(OBJECTS) and meta["scenes"] == list(SCENES)
    for split, instances in (("train", range(train_n)), ("val", range(train_n, N))):
        arrays = build.load_split(built, split)
        rows = 100 * len(instances)
        assert meta["splits"][split] == {"file": f"composites_{split}.npz", "rows": rows}
        shapes = {name: (a.shape, a.dtype) for name, a in arrays.items()}
        assert shapes == {
            "images": ((rows, SIZE, SIZE, 3), np.uint8),
            "scene_only": ((rows, SIZE, SIZE, 3), np.uint8),
            "masks": ((rows, SIZE, SIZE), np.bool_),
            "locs": ((rows, 4), np.int16),
            "objects": ((rows,), np.int8),
            "scenes": ((rows,), np.int8),
            "instance": ((rows,), np.int32),
        }
        # rows ordered by (object, scene, instance), like the original's file names
        order = [(o, s, i) for o in range(10) for s in range(10) for i in instances]
        assert list(zip(arrays["objects"], arrays["scenes"], arrays["instance"], strict=True)) == order


def test_build_pairs_each_composite_with_its_scene(built: Path):
    arrays = build.load_split(built, "train")
    scenes, _ = synth.synth_source(7, SIZE, N)
    np.testing.assert_array_equal(arrays["scene_only"], scenes[arrays["scenes"], arrays["instance"]])
    for row in range(0, len(arrays["objects"]), 7):
        row0, col0, row1, col1 = arrays["locs"][row]
        box = np.zeros((SIZE, SIZE), dtype=bool)
        box[row0:row1, col0:col1] = True
        assert arrays["masks"][row].any() and not (arrays["masks"][row] & ~box).any()
        np.testing.assert_array_equal(arrays["images"][row][~box], arrays["scene_only"][row][~box])


def test_build_is_deterministic(built: Path, tmp_path: Path):
    again = build.build_synth(tmp_path / "again", seed=7, size=SIZE, n=N, val=VAL)
    other = build.build_synth(tmp_path / "other", seed=8, size=SIZE, n=N, val=VAL)
    for name, array in build.load_split(built, "val").items():
        np.testing.assert_array_equal(array, build.load_split(again, "val")[name])
    assert not np.array_equal(build.load_split(built, "val")["locs"], build.load_split(other, "val")["locs"])


def test_scene_k_classes_are_nested_start_with_bedroom_and_follow_the_seed(built: Path):
    chosen = build.scene_k_classes(7)
    assert sorted(chosen) == list(range(1, 11))
    assert chosen[1] == ("bedroom",)
    assert all(chosen[k][:-1] == chosen[k - 1] for k in range(2, 11))
    assert sorted(chosen[10]) == sorted(SCENES)
    assert len({build.scene_k_classes(seed)[10] for seed in range(10)}) > 1
    assert build.load_meta(built)["scene_k"] == {str(k): list(v) for k, v in chosen.items()}


def test_with_dog_marks_the_dog_rows_of_the_chosen_scenes(built: Path):
    arrays = build.load_split(built, "train")
    per_pair = int(0.9 * N)
    for k, classes in build.scene_k_classes(7).items():
        flags = build.with_dog(arrays, classes)
        assert flags.shape == arrays["objects"].shape and flags.sum() == k * per_pair
        assert (arrays["objects"][flags] == DOG).all()
        assert {SCENES[s] for s in arrays["scenes"][flags]} == set(classes)


def test_build_synth_caches_under_home(home: Path):
    directory = build.build_synth(seed=1, size=SIZE, n=2, val=1)
    assert directory.parent == home / "datasets" / "bam" and directory.name.startswith("synth-")
    stamp = (directory / "composites_val.npz").stat().st_mtime_ns
    assert build.build_synth(seed=1, size=SIZE, n=2, val=1) == directory
    assert (directory / "composites_val.npz").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert build.build_synth(seed=2, size=SIZE, n=2, val=1) != directory
    assert json.loads((directory / "meta.json").read_text())["seed"] == 1


@pytest.mark.parametrize(
    ("size", "n", "val", "match"),
    [(8, 10, 1, "--size 8"), (32, 1, 1, "--n 1"), (32, 10, 10, "--val 10"), (32, 10, 0, "--val 0")],
)
def test_build_refuses_bad_size_n_or_val(size: int, n: int, val: int, match: str):
    with pytest.raises(UsageProblem, match=match):
        build.build_synth(seed=0, size=size, n=n, val=val)


def test_loading_an_unbuilt_folder_says_so(tmp_path: Path):
    with pytest.raises(UsageProblem, match="no complete BAM build"):
        build.load_split(tmp_path, "train")
