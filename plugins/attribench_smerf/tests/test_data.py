"""SMERF TextBox data: Table 1 of the paper, bucket numbering, geometry, determinism, caching, backgrounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from attribench_smerf import datasets, settings, textbox
from attribench_smerf.datasets import make_textbox
from attribench_smerf.settings import SETTINGS, bucket_counts, bucket_id, bucket_objects, bucket_specs
from PIL import Image

from attribench_core.errors import UsageProblem


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("ATTRIBENCH_HOME", str(path))
    return path


# Paper Table 1, transcribed row by row: "ID of Buckets Labeled 0", "... Labeled 1", "Objects to Focus",
# "Objects to Avoid" (B1 = Box1, B2 = Box2, T = Text, N = none). Buckets missing from a row are undefined
# (not generated), except for the two gaps in the avoid row noted where they are filled in.
TABLE1 = {
    "simple_fr": (
        "1,2,3,4,5,6",
        "7,8,9,10,11,12",
        "1,2,3,4,5,6: N; 7,8,9,10,11,12: B1",
        # the paper leaves out bucket 7 (Box1 alone): nothing is left to avoid
        "1: N; 2,3,8,9: T; 4,10: B2; 5,6,11,12: B2,T" + "; 7: N",
    ),
    "simple_nr": (
        "2,5,8,11",
        "3,6,9,12",
        "2,3,5,6,8,9,11,12: T",
        "2,3: N; 5,6: B2; 8,9: B1; 11,12: B1,B2",
    ),
    "complex_fr": (
        "1,2,3,4,5,6,7,8,9",
        "10,11,12",
        "1,2,3,4,5,6,7,8,9: N; 10,11,12: B1,B2",
        # the paper leaves out buckets 8-9 (Box1 + a letter); the original code lists Text as secondary
        # whenever it is present, and we follow the code
        "1,4,7,10: N; 2,3,5,6,11,12: T" + "; 8,9: T",
    ),
    "complex_cr1": (
        "2,4,5,6,8",
        "3,9,10,11,12",
        "2,3,8,9: T; 4,5,6: B2; 10,11,12: B1,B2",
        "2,3,4,10: N; 8,9: B1; 5,6,11,12: T",
    ),
    "complex_cr2": (
        "2,5,7,8,9",
        "3,6,10,11,12",
        "2,3,5,6: T; 7,8,9: B1; 10,11,12: B1,B2",
        "2,3,7,10: N; 5,6: B2; 8,9,11,12: T",
    ),
    "complex_cr3": (
        "1,2,3,5,11",
        "6,7,8,9,12",
        "1,2,3: N; 5,6,11,12: B2,T; 7,8,9: B1",
        "1,5,6,7: N; 2,3,8,9: T; 11,12: B1",
    ),
    "complex_cr4": (
        "1,2,3,8,11",
        "4,5,6,9,12",
        "1,2,3: N; 4,5,6: B2; 8,9,11,12: B1,T",
        "1,4,8,9: N; 2,3,5,6: T; 11,12: B2",
    ),
}
UNDEFINED = {"simple_nr": {1, 4, 7, 10}, "complex_cr1": {1, 7}, "complex_cr2": {1, 4}}
UNDEFINED |= {"complex_cr3": {4, 10}, "complex_cr4": {7, 10}}
NAMES = {"N": None, "B1": "box1", "B2": "box2", "T": "text"}


def ids(text: str) -> list[int]:
    return [int(i) for i in text.split(",")]


def objects_row(row: str) -> dict[int, set[str]]:
    """A Table 1 objects row, `1,2: B1,T; 3: N`, as {1: {"box1", "text"}, 2: ..., 3: set()}."""
    out = {}
    for group in row.split(";"):
        buckets, names = group.split(":")
        for b in ids(buckets):
            out[b] = {NAMES[n.strip()] for n in names.split(",")} - {None}
    return out


def expected(setting: str) -> dict[int, tuple[int, set[str], set[str]]]:
    zeros, ones, focus, avoid = TABLE1[setting]
    labels = dict.fromkeys(ids(zeros), 0) | dict.fromkeys(ids(ones), 1)
    focus_of, avoid_of = objects_row(focus), objects_row(avoid)
    assert set(focus_of) == set(avoid_of) == set(labels)
    return {b: (labels[b], focus_of[b], avoid_of[b]) for b in labels}


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_bucket_matches_paper_table_1(setting):
    specs = bucket_specs(setting)
    want = expected(setting)
    assert sorted(specs) == sorted(want)
    assert set(range(1, 13)) - set(specs) == UNDEFINED.get(setting, set())
    for b, spec in specs.items():
        label, primary, secondary = want[b]
        assert (spec.bucket, spec.label) == (b, label)
        assert (set(spec.primary), set(spec.secondary)) == (primary, secondary)
        assert len(spec.primary) == len(primary) and len(spec.secondary) == len(secondary)


def test_setting_groups():
    assert settings.SIMPLE == ("simple_fr", "simple_nr")
    assert settings.COMPLEX == ("complex_fr", "complex_cr1", "complex_cr2", "complex_cr3", "complex_cr4")
    assert set(SETTINGS) == set(TABLE1)


def test_bucket_numbering_follows_the_paper():
    # 1-3 no box, 4-6 Box2 only, 7-9 Box1 only, 10-12 both; within each: none, 'A', 'B'
    assert [bucket_id(False, False, t) for t in range(3)] == [1, 2, 3]
    assert [bucket_id(False, True, 0), bucket_id(True, False, 1), bucket_id(True, True, 2)] == [4, 8, 12]
    for b in range(1, 13):
        o = bucket_objects(b)
        assert bucket_id(o.box1, o.box2, o.text) == b
    assert bucket_objects(9) == (True, False, 2) and bucket_objects(9).letter == "B"
    assert bucket_objects(11).present == ("box1", "box2", "text")
    with pytest.raises(ValueError):
        bucket_objects(13)


def test_paper_preset_matches_table_2():
    totals = {
        "simple_fr": (24000, 6000),
        "simple_nr": (16000, 4000),
        "complex_fr": (36000, 6000),
        **{s: (150000, 4000) for s in SETTINGS if "_cr" in s},
    }
    for setting, (train, test) in totals.items():
        assert sum(bucket_counts(setting, "train", "paper").values()) == train
        assert sum(bucket_counts(setting, "test", "paper").values()) == test
    fr = bucket_counts("complex_fr", "train", "paper")
    assert {fr[b] for b in (10, 11, 12)} == {6000} and {fr[b] for b in range(1, 10)} == {2000}


def dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation of `[N,H,W]` masks by `radius` pixels."""
    _, h, w = masks.shape
    padded = np.pad(masks, ((0, 0), (radius, radius), (radius, radius)))
    out = np.zeros_like(masks)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[:, dy : dy + h, dx : dx + w]
    return out


def bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_objects_have_their_sizes_never_overlap_and_keep_the_margin():
    n = 1500
    rng = np.random.default_rng(7)
    text = rng.integers(1, 3, n)
    images, boxes = textbox.draw(rng, np.ones(n, bool), np.ones(n, bool), text)
    masks = textbox.box_masks(boxes)
    assert images.dtype == np.uint8 and images.shape == (n, 3, 64, 64)
    assert (masks["box1"].sum((1, 2)) == 100).all() and (masks["box2"].sum((1, 2)) == 16).all()
    for name, side in (("box1", 10), ("box2", 4)):
        top, bottom, left, right = bounds(masks[name][0])
        assert (bottom - top, right - left) == (side, side)
        assert (images[masks[name][:, None].repeat(3, 1)] == 255).all()  # solid white
    # every pair is disjoint, even after growing one of them by the margin: MARGIN background pixels between
    grown = {k: dilate(v, textbox.MARGIN) for k, v in masks.items()}
    for a, b in (("box1", "box2"), ("box1", "text"), ("box2", "text")):
        assert not (grown[a] & masks[b]).any()
    # the margin is a minimum, not a fixed distance: some layouts get that close
    assert (dilate(masks["box1"], textbox.MARGIN + 1) & masks["text"]).any()
    # positions span the whole image (objects may touch the border)
    assert boxes[:, 0, 0].min() == 0 and boxes[:, 0, 2].max() == 64
    assert boxes[:, 2, 1].min() == 0 and boxes[:, 2, 3].max() == 64


def test_text_region_is_the_tight_box_of_the_glyph_ink():
    n = 400
    rng = np.random.default_rng(3)
    text = np.arange(n) % 2 + 1
    images, boxes = textbox.draw(rng, np.zeros(n, bool), np.zeros(n, bool), text)
    mask = textbox.box_masks(boxes)["text"]
    ink = images.max(axis=1) > 0
    assert not (ink & ~mask).any()  # all ink inside the text box (black background)
    for i in range(6):
        top, bottom, left, right = bounds(mask[i])
        assert bounds(ink[i]) == (top, bottom, left, right)  # and the box is tight
        assert 13 <= bottom - top <= 17 and 10 <= right - left <= 16  # a ~20 px font
        assert images[i, :, top:bottom, left:right].max() == 255
    a, b = (mask[text == code][0].sum() for code in (1, 2))
    assert a != b  # 'A' and 'B' have their own boxes
    assert (mask.sum((1, 2)) > 0).all()


@pytest.mark.parametrize("setting", SETTINGS)
def test_dataset_labels_regions_roles_and_meta(setting):
    data = make_textbox("train", 0, setting, preset="tiny")
    specs = bucket_specs(setting)
    counts = bucket_counts(setting, "train", "tiny")
    want = expected(setting)
    assert (data.num_classes, data.class_names, data.setting, data.split) == (2, ("0", "1"), setting, "train")
    assert len(data) == sum(counts.values()) and data.image_shape == (3, 64, 64)
    assert np.array_equal(data.buckets, np.repeat(sorted(counts), [counts[b] for b in sorted(counts)]))
    assert data.images.dtype == np.float32 and data.images.min() >= 0 and data.images.max() == 1
    for i in range(len(data)):
        b = int(data.buckets[i])
        sample = data[i]
        objects = bucket_objects(b)
        assert sample.meta == {"bucket": b}
        assert sample.label == want[b][0] == specs[b].label
        assert dict(sample.roles) == {"primary": specs[b].primary, "secondary": specs[b].secondary}
        present = {k for k, m in sample.regions.items() if m.any()}
        assert present == set(objects.present)
        assert set(specs[b].primary) | set(specs[b].secondary) <= present
    batch = data.batch([0, len(data) - 1])
    assert batch.role_mask("primary").shape == (2, 64, 64)


def test_registration_factories_fix_the_setting():
    for setting in SETTINGS:
        data = getattr(datasets, setting)(split="test", seed=0, preset="tiny")
        assert data.setting == setting and data.split == "test"


def test_source_says_what_the_data_is():
    data = make_textbox("test", 0, "complex_cr1", preset="tiny", background="noise")
    assert data.source == (
        "smerf: TextBox images generated here after Kim, Plumb & Talwalkar 2022 (SMERF; our text rendering, "
        "tiny preset, noise background), not the paper's files"
    )


def arrays(data) -> list[np.ndarray]:
    return [data.images, data.labels, data.buckets, data.boxes, *data.regions.values()]


def test_same_seed_same_data_other_seed_other_data(home, monkeypatch, tmp_path):
    first = make_textbox("test", 5, "complex_cr2", preset="tiny")
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "elsewhere"))  # regenerate, not load
    again = make_textbox("test", 5, "complex_cr2", preset="tiny")
    for x, y in zip(arrays(first), arrays(again), strict=True):
        assert np.array_equal(x, y)
    other = make_textbox("test", 6, "complex_cr2", preset="tiny")
    train = make_textbox("train", 5, "complex_cr2", preset="tiny")
    assert not np.array_equal(first.boxes, other.boxes)
    assert not np.array_equal(first.boxes, train.boxes[: len(first)])


def test_second_call_loads_the_cache_and_a_corrupt_file_is_rebuilt(home, monkeypatch):
    first = make_textbox("test", 1, "simple_nr", preset="tiny")
    (path,) = (home / "datasets" / "smerf" / "simple_nr").glob("*.npz")
    with monkeypatch.context() as patch:
        patch.setattr(datasets, "_generate", lambda *a, **k: pytest.fail("regenerated a cached dataset"))
        loaded = make_textbox("test", 1, "simple_nr", preset="tiny")
    for x, y in zip(arrays(first), arrays(loaded), strict=True):
        assert np.array_equal(x, y)
    path.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = make_textbox("test", 1, "simple_nr", preset="tiny")
    assert np.array_equal(rebuilt.images, first.images)
    # every parameter is in the file name
    make_textbox("test", 1, "simple_nr", preset="tiny", background="noise")
    make_textbox("train", 1, "simple_nr", preset="tiny")
    assert len(list(path.parent.glob("*.npz"))) == 3


def test_a_truncated_cache_file_is_rebuilt(home):
    first = make_textbox("test", 1, "simple_fr", preset="tiny")
    (path,) = (home / "datasets" / "smerf" / "simple_fr").glob("*.npz")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = make_textbox("test", 1, "simple_fr", preset="tiny")
    assert np.array_equal(rebuilt.images, first.images)


def background_pixels(data) -> np.ndarray:
    """`[M,3]` pixel values outside every object region."""
    outside = ~(data.regions["box1"] | data.regions["box2"] | data.regions["text"])
    return data.images.transpose(0, 2, 3, 1)[outside]


def test_black_and_noise_backgrounds():
    black = make_textbox("test", 0, "simple_fr", preset="tiny")
    assert (background_pixels(black) == 0).all()
    noise = make_textbox("test", 0, "simple_fr", preset="tiny", background="noise")
    values = np.rint(background_pixels(noise) * 255)
    assert values.min() == 0 and values.max() == 150  # uniform over 0..150 of 255 (paper B.8)
    assert abs(values.mean() - 75) < 2
    assert (values[:, 0] != values[:, 1]).mean() > 0.9  # channels drawn independently
    assert (noise.images[np.broadcast_to(noise.regions["box1"][:, None], noise.images.shape)] == 1).all()


def test_natural_background_from_a_folder(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    colours = {"red.png": (200, 40, 10), "green.jpg": (0, 250, 0)}
    for name, colour in colours.items():
        Image.new("RGB", (120, 90), colour).save(folder / name)
    (folder / "notes.txt").write_text("not a picture")
    data = make_textbox("test", 0, "simple_nr", preset="tiny", background="natural", background_dir=folder)
    # every image is one picture, resized, brightness x0.7 (JPEG may shift a value by a few levels)
    pixels = np.rint(background_pixels(data) * 255)
    darkened = np.array([[c * 0.7 for c in colour] for colour in colours.values()])
    nearest = np.abs(pixels[:, None] - darkened[None]).max(axis=2)
    assert nearest.min(axis=1).max() <= 3
    assert set(np.unique(nearest.argmin(axis=1))) == {0, 1}  # both pictures used
    # a changed folder is a different dataset
    Image.new("RGB", (64, 64), (0, 0, 255)).save(folder / "blue.png")
    make_textbox("test", 0, "simple_nr", preset="tiny", background="natural", background_dir=folder)
    assert len(list((tmp_path / "home" / "datasets" / "smerf" / "simple_nr").glob("*.npz"))) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"setting": "simpel_fr"}, "Did you mean 'simple_fr'"),
        ({"preset": "papr"}, "Did you mean 'paper'"),
        ({"background": "noisy"}, "Did you mean 'noise'"),
        ({"split": "validation"}, "choose one of train, test"),
        ({"background": "natural"}, "needs background_dir"),
        ({"background": "natural", "background_dir": "/no/such/folder"}, "does not exist"),
        ({"background": "natural", "background_dir": "."}, "holds no .jpg"),
        ({"background_dir": "."}, "only used with background='natural'"),
    ],
)
def test_clear_errors(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageProblem, match=message) as caught:
        make_textbox(**{"preset": "tiny", **options})
    assert "\n" not in str(caught.value)


def test_unreadable_picture_is_a_usage_problem(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UsageProblem, match=r"broken\.jpg"):
        make_textbox("test", preset="tiny", background="natural", background_dir=tmp_path)
