"""core.images: a folder of the test's own PNGs, streamed, with regions from COCO, mask PNGs and VOC boxes
checked pixel by pixel against what the test drew, and runs of the localisation metrics on it."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from photo_folder import COLOURS, DRAWN, H, W, box_mask, write_coco, write_photos
from PIL import Image

from attribench_core.builtin.annotations import read_coco
from attribench_core.builtin.images import dataset_options, make_images
from attribench_core.cli import cli
from attribench_core.errors import UsageProblem
from attribench_core.testing import tiny_model

# pycocotools' decode trips numpy 2's __array__ deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)


def _expected(size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Target and other masks `[5,size,size]` of DRAWN after the crop (size 40) or the 2x nearest
    downscale and crop (size 20: output pixel (i, j) samples drawn pixel (2i+1, 2j+5))."""
    target = np.stack([box_mask(t) for t, _ in DRAWN.values()])
    other = np.stack([box_mask(o) for _, o in DRAWN.values()])
    if size == 40:
        return target[:, :, 4:44], other[:, :, 4:44]
    rows, cols = 2 * np.arange(20) + 1, 2 * np.arange(20) + 5
    return target[:, rows][:, :, cols], other[:, rows][:, :, cols]


def test_images_are_listed_by_classes_txt_and_decoded_at_the_crop(tmp_path):
    data = make_images(root=str(write_photos(tmp_path / "photos")), size=40)
    assert data.class_names == ("cat", "dog", "bird") and data.num_classes == 3 and len(data) == 5
    assert [f for f, _ in data.files] == list(DRAWN) and [label for _, label in data.files] == [0, 0, 1, 1, 2]
    sample = data[0]
    assert sample.image.shape == (3, 40, 40) and sample.meta == {"file": "cat/a.png"}
    assert not sample.regions and not data.batch([0, 1]).regions  # no annotations anywhere
    expected = np.full((40, 40, 3), 60.0)
    expected[box_mask(DRAWN["cat/a.png"][0])[:, 4:44]] = COLOURS["cat"]
    expected[box_mask(DRAWN["cat/a.png"][1])[:, 4:44]] = 255
    assert torch.equal(sample.image, torch.from_numpy(expected.transpose(2, 0, 1) / 255).float())
    train = make_images("train", seed=3, root=str(tmp_path / "photos"), size=40)
    assert torch.equal(train[4].image, data[4].image) and train.split == "train"


def test_the_shorter_side_is_resized_then_the_centre_cropped(tmp_path):
    def crop(pixels: np.ndarray, size: int) -> np.ndarray:
        folder = tmp_path / f"{pixels.shape[0]}x{pixels.shape[1]}"
        (folder / "a").mkdir(parents=True)
        Image.fromarray(np.repeat(pixels[:, :, None], 3, 2).astype(np.uint8)).save(folder / "a" / "x.png")
        return make_images(root=str(folder), size=size)[0].image.numpy() * 255

    columns = np.repeat((np.arange(8) * 30)[None, :], 4, 0)  # 4x8 (HxW): each column its own grey
    assert np.allclose(crop(columns, 4), np.broadcast_to(np.arange(2, 6) * 30.0, (3, 4, 4)))
    rows = columns.T  # 8x4: each row its own grey; rows 2..5 remain
    assert np.allclose(crop(rows, 4), np.broadcast_to((np.arange(2, 6) * 30.0)[:, None], (3, 4, 4)))
    halves = np.zeros((20, 40))  # black left half, white right half: resized to 10x20, columns 5..14 kept
    halves[:, 20:] = 255
    image = crop(halves, 10)
    assert image.shape == (3, 10, 10) and np.all(image[:, :, :4] == 0) and np.all(image[:, :, 6:] == 255)


def test_a_class_index_json_maps_folders_to_outputs_and_names_match_annotations(tmp_path):
    root = write_photos(tmp_path / "photos")
    (root / "classes.txt").unlink()
    index = {
        "0": ["bird", "songbird"],
        "1": ["n00000001", "unseen"],
        "2": ["cat", "tabby_cat"],
        "3": ["dog", "x"],
    }
    (root / "class_index.json").write_text(json.dumps(index))
    data = make_images(root=str(root), size=40)
    assert data.class_names == ("bird", "n00000001", "cat", "dog") and data.num_classes == 4
    assert [label for _, label in data.files] == [0, 2, 2, 3, 3]
    # a VOC object named by the class's JSON name ("tabby_cat" read as "tabby cat") is its target
    (root / "cat" / "a.xml").write_text(_voc([("Tabby Cat", (4, 8, 20, 24))]))
    sample = make_images(root=str(root), size=40)[1]
    assert sample.meta["file"] == "cat/a.png"
    assert np.array_equal(sample.regions["target"].numpy(), box_mask((4, 8, 20, 24))[:, 4:44])


@pytest.mark.parametrize("size", [40, 20])
def test_coco_polygons_and_rle_give_the_drawn_regions_pixel_by_pixel(tmp_path, size):
    root = write_photos(tmp_path / "photos")
    data = make_images(root=str(root), annotations=str(write_coco(tmp_path / "instances.json")), size=size)
    batch = data.batch(np.arange(5))
    target, other = _expected(size)
    assert np.array_equal(batch.regions["target"].numpy(), target)
    assert np.array_equal(batch.regions["other"].numpy(), other)
    assert batch.role_mask("primary").flatten(1).any(1).tolist() == [True, True, True, False, False]
    assert batch.roles[0] == {"primary": ("target",), "secondary": ("other",)}


def _voc(objects, width=W, height=H) -> str:
    """A VOC annotation; boxes (top, left, bottom, right) exclusive become 1-based inclusive bndboxes."""
    parts = [f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (top, left, bottom, right) in objects:
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{left + 1}</xmin><ymin>{top + 1}</ymin>"
            f"<xmax>{right}</xmax><ymax>{bottom}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def _mask_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 200).save(path)


def test_masks_beside_the_images_in_a_parallel_folder_and_voc_boxes(tmp_path):
    root = write_photos(tmp_path / "photos")
    _mask_png(root / "cat" / "a.mask.png", box_mask(DRAWN["cat/a.png"][0]))  # beside
    (root / "dog" / "c.xml").write_text(_voc([("dog", DRAWN["dog/c.png"][0]), ("cat", (30, 0, 40, 10))]))
    data = make_images(root=str(root), size=40)
    assert len(data) == 5  # the mask is not an image
    batch = data.batch([0, 1, 2])
    target, _ = _expected(40)
    assert np.array_equal(batch.regions["target"].numpy(), target[[0, 1, 2]] * [[[1]], [[0]], [[1]]])
    voc_other = box_mask((30, 0, 40, 10))[:, 4:44]  # a cat box in a dog image: another class's instance
    assert np.array_equal(batch.regions["other"][2].numpy(), voc_other)
    assert not batch.regions["other"][0].any()

    masks = tmp_path / "masks"  # the same relative paths, in a folder of their own
    _mask_png(masks / "cat" / "b.png", box_mask(DRAWN["cat/b.png"][0]))
    (masks / "d.xml").write_text(_voc([("person", DRAWN["dog/d.png"][1])]))  # VOC's flat folder
    data = make_images(root=str(root), annotations=str(masks), size=40)
    batch = data.batch(np.arange(5))
    assert batch.role_mask("primary").flatten(1).any(1).tolist() == [False, True, False, False, False]
    assert np.array_equal(batch.regions["target"][1].numpy(), target[1])
    assert np.array_equal(batch.regions["other"][3].numpy(), _expected(40)[1][3])


def test_a_batch_decodes_only_its_own_files(tmp_path, monkeypatch):
    root = write_photos(tmp_path / "photos")
    data = make_images(root=str(root), annotations=str(write_coco(tmp_path / "instances.json")), size=20)
    opened = []
    real_open = Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).relative_to(root).as_posix())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    assert data.batch([3, 1]).images.shape == (2, 3, 20, 20)
    assert opened == ["dog/d.png", "cat/b.png"]


def test_the_fingerprint_follows_images_classes_and_annotations(tmp_path, monkeypatch):
    root = write_photos(tmp_path / "photos")
    coco = write_coco(tmp_path / "instances.json")
    monkeypatch.chdir(tmp_path)
    options = dataset_options("photos", "instances.json", 40)
    assert options["root"] == str(root.resolve()) and options["annotations"] == str(coco.resolve())
    assert dataset_options(str(root), str(coco), 40) == options
    assert len(make_images(**options)) == 5
    prints = [options["fingerprint"]]
    write_coco(coco, ["a.png", "b.png", "c.png", "d.png", "e.png"])  # another annotation file
    prints.append(dataset_options(str(root), str(coco), 40)["fingerprint"])
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "bird" / "f.png")
    prints.append(dataset_options(str(root), str(coco), 40)["fingerprint"])
    (root / "classes.txt").write_text("dog\ncat\nbird\n")
    prints.append(dataset_options(str(root), str(coco), 40)["fingerprint"])
    _mask_png(root / "cat" / "a.mask.png", box_mask(DRAWN["cat/a.png"][0]))
    prints.append(dataset_options(str(root), "", 40)["fingerprint"])
    (root / "cat" / "a.mask.png").write_bytes((root / "cat" / "a.mask.png").read_bytes() + b"\0")
    prints.append(dataset_options(str(root), "", 40)["fingerprint"])
    assert len(set(prints)) == len(prints)


def _folders(tmp_path: Path) -> dict[str, Path]:
    """Folders that core.images refuses, by what is wrong with them."""
    made = {name: tmp_path / name for name in ("flat", "bare", "broken", "unlisted", "twice", "both")}
    made["flat"].mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(made["flat"] / "x.png")
    (made["bare"] / "cat").mkdir(parents=True)
    (made["bare"] / "cat" / "notes.txt").write_text("")
    for name in ("broken", "unlisted", "twice", "both"):
        write_photos(made[name])
    (made["broken"] / "dog" / "bad.png").write_bytes(b"not a png")
    (made["unlisted"] / "classes.txt").write_text("cat\ndog\n")
    (made["twice"] / "classes.txt").write_text("cat\ndog\nbird\ncat\n")
    (made["both"] / "imagenet_class_index.json").write_text("{}")
    return made


def test_unusable_folders_are_one_line_usage_errors(tmp_path):
    made = _folders(tmp_path)
    refused = [
        ("", "core.images needs --images DIR"),
        (str(tmp_path / "missing"), "does not exist"),
        (str(made["flat"]), "has no class folders"),
        (str(made["bare"]), "hold no images"),
        (str(made["unlisted"]), f"Class folder 'bird' of '{made['unlisted']}' is not listed"),
        (str(made["twice"]), "lists 'cat' more than once"),
        (str(made["both"]), "has both 'classes.txt' and 'imagenet_class_index.json'; keep one"),
    ]
    for root, message in refused:
        with pytest.raises(UsageProblem) as caught:
            make_images(root=root, size=4)
        assert message in str(caught.value) and "\n" not in str(caught.value), root
    with pytest.raises(UsageProblem, match=f"Cannot read image '{made['broken'] / 'dog' / 'bad.png'}'"):
        make_images(root=str(made["broken"]), size=4).batch(np.arange(6))
    with pytest.raises(UsageProblem, match="positive image size; got 0"):
        make_images(root=str(made["twice"].parent / "broken"), size=0)
    (made["both"] / "classes.txt").unlink()
    (made["both"] / "imagenet_class_index.json").write_text('{"0": ["cat", "tabby"], "2": ["dog", "dog"]}')
    with pytest.raises(UsageProblem, match=r'is not JSON of the form {"0": \["n01440764", "tench"\]'):
        make_images(root=str(made["both"]))


def test_annotations_that_do_not_fit_are_one_line_usage_errors(tmp_path):
    root = write_photos(tmp_path / "photos")
    other_images = write_coco(tmp_path / "other.json", ["x1.jpg", "x2.jpg", "x3.jpg", "x4.jpg"])
    with pytest.raises(UsageProblem) as caught:
        make_images(root=str(root), annotations=str(other_images))
    assert str(caught.value) == (
        f"Annotation file '{other_images}' describes none of the 5 images in '{root}'; its file names are "
        "like x1.jpg, x2.jpg, x3.jpg, the folder's like cat/a.png, cat/b.png, dog/c.png."
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageProblem, match=r"holds no mask .* for any of the 5 images"):
        make_images(root=str(root), annotations=str(tmp_path / "empty"))
    _mask_png(tmp_path / "masks" / "dog" / "c.png", np.ones((10, 12), bool))
    data = make_images(root=str(root), annotations=str(tmp_path / "masks"), size=20)
    message = (
        f"Mask '{tmp_path / 'masks' / 'dog' / 'c.png'}' is 12x10 but its image '{root / 'dog' / 'c.png'}'"
    )
    with pytest.raises(UsageProblem, match=f"{message} is 48x40 \\(width x height\\)"):
        data.batch([2])
    (root / "cat" / "a.xml").write_text(_voc([("cat", (0, 0, 4, 4))], width=50))
    with pytest.raises(UsageProblem, match=r"a\.xml' is for a 50x40 image, but .*a\.png' is 48x40"):
        make_images(root=str(root), size=20)[0]


def test_coco_without_pycocotools_names_the_install(tmp_path, monkeypatch):
    root, coco = write_photos(tmp_path / "photos"), write_coco(tmp_path / "instances.json")
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    read_coco.cache_clear()
    with pytest.raises(UsageProblem, match=re.escape("need pycocotools: pip install 'attribench[coco]'")):
        make_images(root=str(root), annotations=str(coco))


def _run(*args: str):
    return CliRunner().invoke(cli, ["run", *args])


def test_localisation_metrics_run_on_the_folder_end_to_end(test_plugins, tmp_path):
    root, coco = write_photos(tmp_path / "photos"), write_coco(tmp_path / "instances.json")
    args = ["--images", str(root), "--annotations", str(coco), "--size", "20", "--model", "t.folder_cnn"]
    result = _run("core.pointing_game", *args, "-e", "t.grad", "-e", "t.noise", "--num-imgs", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["provenance"]["dataset"] == "core.images" and payload["provenance"]["num_imgs"] == 4
    for row in payload["results"]:
        assert row["n"] + row["n_skipped"] == 4 and row["value"] in (0.0, 1 / 3, 2 / 3, 1.0, 0.5)
        assert set(row["skipped_reasons"]) <= {"no primary region"}
    mass = json.loads(_run("core.relevance_mass", *args, "-e", "t.noise", "--json").stdout)["results"][0]
    assert mass["n"] == 3 and mass["skipped_reasons"] == {"no primary region": 2}
    assert 0 < mass["value"] < 1


def test_bad_folders_and_annotations_are_one_line_errors_from_the_cli(test_plugins, tmp_path):
    made = _folders(tmp_path)
    root = write_photos(tmp_path / "photos")
    _mask_png(tmp_path / "masks" / "dog" / "d.png", np.ones((10, 12), bool))
    model = ["--model", "t.folder_cnn", "-e", "t.grad", "--size", "8"]
    coco = write_coco(tmp_path / "instances.json")
    weights = tmp_path / "weights.pt"
    torch.save(tiny_model(3).state_dict(), weights)
    cases = [
        (["--images", str(made["bare"]), *model], "hold no images"),
        (
            ["--images", str(root), "--annotations", str(write_coco(tmp_path / "o.json", ["z.png"])), *model],
            "none of",
        ),
        (["--images", str(root), "--annotations", str(tmp_path / "masks"), *model], "d.png' is 12x10"),
        (["--images", str(made["broken"]), "--annotations", str(coco), *model], "Cannot read image"),
        # with weights from a file nothing trains: the bad image stops the attributions, not one explainer
        (
            ["--images", str(made["broken"]), "--annotations", str(coco), *model, "--weights", str(weights)],
            "bad.png",
        ),
        (["--images", str(made["unlisted"]), *model], "is not listed in"),
        (["--annotations", str(tmp_path / "o.json")], "give the folder with --images DIR"),
        (["--images", str(root)], "needs a model for your images, but core.toy_cnn is made for core.toy"),
        (["--images", str(root), *model], "dataset core.images has none; give them with --annotations PATH"),
    ]
    for args, message in cases:
        result = _run("core.relevance_mass", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_images_module_keeps_no_pixels(tmp_path):
    data = make_images(root=str(write_photos(tmp_path / "photos")), size=40)
    assert not any(isinstance(v, (np.ndarray, torch.Tensor)) for v in vars(data).values())
