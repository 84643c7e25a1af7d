"""BAM's real source on a tiny COCO-format annotation file and tiny MiniPlaces folders written by the test.

Each COCO image holds one rectangle per object category, painted in that category's own colour, so a cut-out
shows which annotation it came from (the "stop sign" name included); image i's rectangles are 10 + i rows
tall, so the cut-outs' heights show the order of the images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from attribench_bam import build, coco, miniplaces
from attribench_bam.classes import COCO_NAMES, DOG, MINIPLACES_FOLDERS, OBJECTS, SCENES
from PIL import Image

from attribench_core.errors import UsageProblem

SIDE = 48
SIZE = 32
CATEGORY_IDS = {name: 11 + k for k, name in enumerate(OBJECTS)}
COLOURS = {name: (30 + 20 * k, 200 - 15 * k, (60 + 37 * k) % 256) for k, name in enumerate(OBJECTS)}
SMALL_DOG_COLOUR = (250, 250, 250)

# pycocotools' mask decoding predates numpy 2's copy keyword
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def rectangle(x0: int, y0: int, x1: int, y1: int) -> dict:
    """A COCO polygon annotation body for the rectangle [x0,x1)×[y0,y1)."""
    return {
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": 0,
    }


def write_coco(root: Path, image_ids: list[int], on_disk: list[int]) -> Path:
    """Images (PNG) and an instances file (listed in the order given); every image has one 5 × (10 + id)
    rectangle per category, image 1 a second, smaller dog. Only the images in `on_disk` are written.
    Returns the annotation file."""
    images_dir = root / "train2017"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in image_ids:
        picture = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
        for k, name in enumerate(OBJECTS):
            x0, y0, height = 9 * (k % 5) + 2, 24 * (k // 5) + 2, 10 + image_id
            picture[y0 - 1 : y0 + height + 1, x0 - 1 : x0 + 6] = COLOURS[name]  # a pixel beyond the polygon
            box = rectangle(x0, y0, x0 + 5, y0 + height)
            annotations.append({"image_id": image_id, "category_id": CATEGORY_IDS[name], **box})
        if image_id == 1:
            picture[1:9, 45:48] = SMALL_DOG_COLOUR
            annotations.append({"image_id": 1, "category_id": CATEGORY_IDS["dog"], **rectangle(46, 2, 47, 8)})
        file_name = f"{image_id:012d}.png"
        images.append({"id": image_id, "file_name": file_name, "height": SIDE, "width": SIDE})
        if image_id in on_disk:
            Image.fromarray(picture).save(images_dir / file_name)
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    categories = [{"id": CATEGORY_IDS[name], "name": COCO_NAMES[name]} for name in OBJECTS]
    categories.append({"id": 99, "name": "person"})
    annotation_file = root / "instances_train2017.json"
    payload = {"images": images, "annotations": annotations, "categories": categories}
    annotation_file.write_text(json.dumps(payload))
    return annotation_file


def write_miniplaces(root: Path, count: int, layout: str = "train") -> None:
    """`count` 40×40 JPEGs per scene class, each a flat colour set by its scene and number."""
    for s, scene in enumerate(SCENES):
        folder = root / layout / scene[0] / MINIPLACES_FOLDERS[scene]
        folder.mkdir(parents=True)
        for i in range(count):
            colour = (20 * s + 10, 10 + 60 * i, 128)
            Image.fromarray(np.full((40, 40, 3), colour, dtype=np.uint8)).save(folder / f"{i + 1:08d}.jpg")


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    annotation_file = write_coco(tmp_path / "coco", [3, 1, 2], on_disk=[1, 2, 3])
    write_miniplaces(tmp_path / "miniplaces", 3)
    return tmp_path / "coco", annotation_file, tmp_path / "miniplaces"


def test_cut_outs_are_the_largest_instance_of_each_category_stop_sign_included(sources):
    coco_root, annotation_file, _ = sources
    objects, skipped = coco.coco_objects(coco.load_coco(annotation_file), coco.images_folder(coco_root), 3)
    assert [len(cut_outs) for cut_outs in objects] == [3] * 10
    assert skipped == {name: {} for name in OBJECTS}
    for name, cut_outs in zip(OBJECTS, objects, strict=True):
        assert [rgba.shape for rgba in cut_outs] == [(11, 5, 4), (12, 5, 4), (13, 5, 4)]  # bboxes, id order
        for rgba in cut_outs:
            assert (rgba[..., 3] == 255).mean() > 0.8
            opaque = rgba[rgba[..., 3] == 255, :3]
            assert (opaque == COLOURS[name]).all(), name  # its own category's rectangle, not the small dog


def test_build_real_layout(sources, tmp_path: Path):
    coco_root, annotation_file, miniplaces_root = sources
    out = build.build_real(
        coco_root, annotation_file, miniplaces_root, tmp_path / "out", seed=3, size=SIZE, n=3
    )
    meta = build.load_meta(out)
    assert (meta["source"], meta["size"], meta["n"], meta["train_instances"]) == ("real", SIZE, 3, 2)
    assert meta["coco_skipped"] == {name: {} for name in OBJECTS}
    train, val = build.load_split(out, "train"), build.load_split(out, "val")
    assert len(train["objects"]) == 200 and len(val["objects"]) == 100
    assert train["images"].shape == (200, SIZE, SIZE, 3)
    files = miniplaces.miniplaces_files(miniplaces_root, 3)
    scenes = miniplaces.read_scenes(files, SIZE)
    np.testing.assert_array_equal(val["scene_only"], scenes[val["scenes"], val["instance"]])
    # the dog cut-out (its own colour, not the small white dog's) is pasted on the scene
    dogs = val["images"][val["objects"] == DOG]
    dog_pixels = dogs[val["masks"][val["objects"] == DOG]]
    np.testing.assert_array_equal(np.median(dog_pixels, axis=0), COLOURS["dog"])
    heights = val["locs"][:, 2] - val["locs"][:, 0]  # the cut-outs' longer side
    assert heights.min() >= 18 and heights.max() < 22


def test_images_train_layout_is_accepted(tmp_path: Path):
    write_miniplaces(tmp_path / "mp", 2, layout="images/train")
    assert len(miniplaces.miniplaces_files(tmp_path / "mp", 2)[0]) == 2


def test_unusable_images_are_skipped_counted_and_reported(tmp_path: Path):
    annotation_file = write_coco(tmp_path / "coco", [1, 2, 3, 4, 5], on_disk=[1, 3, 4, 5])
    payload = json.loads(annotation_file.read_text())
    for annotation in payload["annotations"]:
        if (annotation["image_id"], annotation["category_id"]) == (3, CATEGORY_IDS["dog"]):
            annotation["segmentation"] = [[1, 2]]  # pycocotools cannot read a one-point polygon
    annotation_file.write_text(json.dumps(payload))
    write_miniplaces(tmp_path / "mp", 3)
    with pytest.warns(UserWarning) as caught:
        out = build.build_real(
            tmp_path / "coco", annotation_file, tmp_path / "mp", tmp_path / "out", n=3, size=SIZE
        )
    messages = [str(w.message) for w in caught]
    assert "COCO 'backpack': skipped 1 image (1 image file missing or unreadable)." in messages
    assert any(m.startswith("COCO 'dog': skipped 2 images") for m in messages)
    skipped = build.load_meta(out)["coco_skipped"]
    assert skipped["backpack"] == {"image file missing or unreadable": 1}
    assert skipped["dog"] == {
        "image file missing or unreadable": 1,
        "unreadable segmentation (Exception: input type is not supported.)": 1,
    }


def test_missing_folders_are_one_line_errors(sources, tmp_path: Path):
    coco_root, annotation_file, miniplaces_root = sources
    with pytest.raises(UsageProblem, match=r"COCO image folder .* does not exist"):
        build.build_real(
            tmp_path / "nope", annotation_file, miniplaces_root, tmp_path / "out", n=2, size=SIZE
        )
    with pytest.raises(UsageProblem, match=r"MiniPlaces folder .* does not exist"):
        build.build_real(coco_root, annotation_file, tmp_path / "nope", tmp_path / "out", n=2, size=SIZE)
    with pytest.raises(UsageProblem, match="has no train/"):
        build.build_real(coco_root, annotation_file, coco_root, tmp_path / "out", n=2, size=SIZE)
    with pytest.raises(UsageProblem, match=r"annotation file .* does not exist"):
        build.build_real(coco_root, tmp_path / "none.json", miniplaces_root, tmp_path / "out", n=2, size=SIZE)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not readable JSON"),
        ("[1, 2]", "is not a COCO instances file"),
        ('{"images": [], "annotations": []}', "no categories list"),
        ('{"images": [{"file_name": "x"}], "annotations": [], "categories": []}', "malformed entries"),
    ],
)
def test_malformed_annotation_files_are_one_line_errors(tmp_path: Path, content: str, match: str):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageProblem, match=match) as error:
        coco.load_coco(path)
    assert "\n" not in str(error.value)


def test_a_missing_category_names_itself(tmp_path: Path, sources):
    coco_root, annotation_file, miniplaces_root = sources
    payload = json.loads(annotation_file.read_text())
    for category in payload["categories"]:
        if category["name"] == "stop sign":
            category["name"] = "stop_sign"  # the original's spelling matches no COCO category
    annotation_file.write_text(json.dumps(payload))
    with pytest.raises(UsageProblem, match="COCO category 'stop sign' is not in the annotation file"):
        build.build_real(coco_root, annotation_file, miniplaces_root, tmp_path / "out", n=2, size=SIZE)


def test_too_few_images_suggest_a_smaller_n(sources, tmp_path: Path):
    coco_root, annotation_file, miniplaces_root = sources
    write_miniplaces(tmp_path / "more", 5)
    with pytest.raises(UsageProblem, match=r"Only 3 MiniPlaces images of 'bamboo_forest'.*at most 3"):
        build.build_real(coco_root, annotation_file, miniplaces_root, tmp_path / "out", n=4, size=SIZE)
    with pytest.raises(UsageProblem, match=r"Only 3 usable COCO images of 'backpack'.*at most 3"):
        build.build_real(coco_root, annotation_file, tmp_path / "more", tmp_path / "out", n=4, size=SIZE)


def test_bam_build_command_output_runs_bam_mcs(sources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`attribench bam build` on the fixture, then `attribench run bam.mcs --data-root` on its output (the
    models' gates lowered: 200 training images cannot train them)."""
    from attribench_bam import models
    from click.testing import CliRunner

    from attribench_core.cli import cli
    from attribench_core.testing import using_plugins

    pytest.importorskip("attribench_methods")
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "ABOVE_CHANCE", 1.0)
    monkeypatch.setattr(models, "MAX_SCENE_DROP", 1.0)
    for cls in (models.ObjModel, models.SceneModel):
        monkeypatch.setattr(cls, "recipe", models.Recipe(epochs=1, min_accuracy=0.0))
    coco_root, annotation_file, miniplaces_root = sources
    with using_plugins(entrypoints=True):
        args = ["bam", "build", "--coco-root", str(coco_root), "--coco-annotations", str(annotation_file)]
        args += ["--miniplaces-root", str(miniplaces_root), "--out", "built", "--size", str(SIZE), "--n", "3"]
        built = CliRunner().invoke(cli, args)
        assert built.exit_code == 0, built.output
        assert "train 200, val 100 composites" in built.output
        run = ["run", "bam.mcs", "--data-root", "built", "-e", "edge", "--num-imgs", "20", "--json"]
        result = CliRunner().invoke(cli, run)
        assert result.exit_code == 0, result.output
        row = json.loads(result.stdout)["results"][0]
        assert row["n"] + row["n_skipped"] == 20
        source = json.loads(result.stdout)["provenance"]["dataset_source"]
        assert source.startswith("BAM recipe on real data: COCO objects pasted on MiniPlaces scenes")
        missing = CliRunner().invoke(cli, ["run", "bam.mcs", "--data-root", "nowhere", "-e", "edge"])
        assert missing.exit_code == 2 and "no complete BAM build" in missing.output
