"""soco.images and soco.torchscript: a user's image folder and TorchScript model, alone and through a run."""

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from attribench_soco import folder
from attribench_soco.folder import TorchScriptModel, dataset_options, make_images
from PIL import Image

from attribench_core import Explainer, hookimpl
from attribench_core.errors import ModelError, UsageProblem
from attribench_core.metric import Metric
from attribench_core.params import Param
from attribench_core.result import Result
from attribench_core.runner import RunRequest, prepare, run
from attribench_core.testing import plugin_registry, tiny_model

# recent torch deprecates TorchScript in favour of torch.export; it still works, and is what users have
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def _picture(path: Path, pixels: np.ndarray) -> None:
    """Save uint8 `[H,W,3]` pixels; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)


def _plain(value: int, height: int = 6, width: int = 6) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _folder(root: Path) -> Path:
    """cat: two PNGs (values 10, 20), dog: one JPEG, empty: no images; plus files that are not images."""
    _picture(root / "cat" / "a.png", _plain(10))
    _picture(root / "cat" / "b.png", _plain(20, 8, 6))
    _picture(root / "dog" / "c.jpg", _plain(200))
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "d.png").write_bytes(b"skipped")
    return root


def _scripted(path: Path, num_classes: int = 3) -> Path:
    torch.jit.script(tiny_model(num_classes)).save(str(path))
    return path


def test_a_folder_gives_rgb_images_in_0_1_labelled_by_sorted_folder_names(tmp_path):
    data = make_images("test", root=str(_folder(tmp_path / "images")), size=4)
    assert data.image_shape == (3, 4, 4) and len(data) == 3 and data.images.dtype == np.float32
    assert data.num_classes == 3 and data.class_names == ("cat", "dog", "empty")
    assert data.labels.tolist() == [0, 0, 1]
    assert [m["file"] for m in data.meta] == ["cat/a.png", "cat/b.png", "dog/c.jpg"]
    assert np.allclose(data.images[0], 10 / 255) and np.allclose(data.images[1], 20 / 255)
    assert np.abs(data.images[2] - 200 / 255).max() < 0.02  # JPEG is lossy
    train = make_images("train", seed=3, root=str(tmp_path / "images"), size=4)
    assert np.array_equal(train.images, data.images) and train.split == "train"
    batch = data.batch([2, 0])
    assert batch.images.shape == (2, 3, 4, 4) and batch.labels.tolist() == [1, 0] and not batch.regions


def test_classes_txt_sets_the_label_order_and_may_list_classes_without_a_folder(tmp_path):
    root = _folder(tmp_path / "images")
    (root / "classes.txt").write_text("dog\nempty\n\nunseen\ncat\n")
    data = make_images(root=str(root), size=4)
    assert data.class_names == ("dog", "empty", "unseen", "cat") and data.num_classes == 4
    assert data.labels.tolist() == [0, 3, 3]  # dog first, then cat's two images
    assert [m["file"] for m in data.meta] == ["dog/c.jpg", "cat/a.png", "cat/b.png"]


def test_the_shorter_side_is_resized_then_the_centre_cropped(tmp_path):
    columns = np.repeat((np.arange(8) * 30)[None, :, None], 3, 2)  # 4x8 (HxW): each column its own grey
    _picture(tmp_path / "wide" / "a" / "x.png", np.repeat(columns, 4, 0))
    crop = make_images(root=str(tmp_path / "wide"), size=4).images[0]  # no resize: columns 2..5 remain
    assert np.allclose(crop * 255, np.broadcast_to(np.arange(2, 6) * 30.0, (3, 4, 4)))

    rows = np.repeat((np.arange(8) * 30)[:, None, None], 3, 2)  # 8x4 (HxW): each row its own grey
    _picture(tmp_path / "tall" / "a" / "x.png", np.repeat(rows, 4, 1))
    crop = make_images(root=str(tmp_path / "tall"), size=4).images[0]  # rows 2..5 remain
    assert np.allclose(crop * 255, np.broadcast_to((np.arange(2, 6) * 30.0)[:, None], (3, 4, 4)))

    halves = np.zeros((20, 40, 3), np.uint8)  # 20x40: black left half, white right half
    halves[:, 20:] = 255
    _picture(tmp_path / "big" / "a" / "x.png", halves)
    image = make_images(root=str(tmp_path / "big"), size=10).images[0]  # 10x20, then columns 5..14
    assert image.shape == (3, 10, 10)
    assert np.all(image[:, :, :4] == 0) and np.all(image[:, :, 6:] == 1)


def _errors(tmp_path: Path) -> list[tuple[str, str]]:
    """(root, expected message) for every folder the factory refuses."""
    (tmp_path / "flat").mkdir()
    _picture(tmp_path / "flat" / "x.png", _plain(0))
    (tmp_path / "bare" / "cat").mkdir(parents=True)
    (tmp_path / "bare" / "cat" / "notes.txt").write_text("")
    broken = _folder(tmp_path / "broken")
    (broken / "dog" / "bad.png").write_bytes(b"not a png")
    unlisted = _folder(tmp_path / "unlisted")
    (unlisted / "classes.txt").write_text("cat\ndog\n")
    twice = _folder(tmp_path / "twice")
    (twice / "classes.txt").write_text("cat\ndog\nempty\ncat\n")
    return [
        ("", "soco.images needs --images DIR"),
        (str(tmp_path / "missing"), "does not exist"),
        (str(tmp_path / "flat"), "has no class folders"),
        (str(tmp_path / "bare"), "hold no images"),
        (str(broken), f"Cannot read image '{broken / 'dog' / 'bad.png'}'"),
        (
            str(unlisted),
            f"Class folder 'empty' of '{unlisted}' is not listed in '{unlisted / 'classes.txt'}'",
        ),
        (str(twice), "lists 'cat' more than once"),
    ]


def test_unusable_folders_are_one_line_usage_errors(tmp_path):
    for root, message in _errors(tmp_path):
        with pytest.raises(UsageProblem) as caught:
            make_images(root=root, size=4)
        assert message in str(caught.value) and "\n" not in str(caught.value), root
    with pytest.raises(UsageProblem, match="positive image size; got 0"):
        make_images(root=str(tmp_path / "broken"), size=0)


def test_dataset_options_give_an_absolute_root_and_a_fingerprint_that_follows_the_files(
    tmp_path, monkeypatch
):
    root = _folder(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    options = dataset_options("images", 4)
    assert set(options) == set(folder.OPTIONS)
    assert options["root"] == str(root.resolve()) and options["size"] == 4
    assert dataset_options(str(root), 4) == options
    assert len(make_images(**options)) == 3
    _picture(root / "dog" / "e.png", _plain(5))
    added = dataset_options(str(root), 4)["fingerprint"]
    (root / "classes.txt").write_text("empty\ndog\ncat\n")
    reordered = dataset_options(str(root), 4)["fingerprint"]
    assert len({options["fingerprint"], added, reordered}) == 3
    with pytest.raises(UsageProblem, match="needs --images DIR"):
        dataset_options("")


def test_torchscript_model_loads_a_scripted_file_and_refuses_anything_else(tmp_path):
    path = _scripted(tmp_path / "model.pt")
    module = TorchScriptModel().from_file(path, 3, (3, 8, 8))
    images = torch.rand(2, 3, 8, 8)
    assert isinstance(module, torch.jit.ScriptModule) and not module.training
    assert torch.equal(module(images), torch.jit.load(str(path))(images))
    torch.save(tiny_model(3).state_dict(), tmp_path / "state.pt")
    refused = [
        (tmp_path / "state.pt", 3, (3, 8, 8), "is not a TorchScript model; save yours with torch.jit.script"),
        (path, 5, (3, 8, 8), "gives 3 logits per image but the image folder has 5 classes"),
        (path, 3, (1, 8, 8), "fails on a 1x8x8 image"),
    ]
    for file, classes, shape, message in refused:
        with pytest.raises(ModelError) as caught:
            TorchScriptModel().from_file(file, classes, shape)
        assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="pass your TorchScript model with --weights FILE"):
        TorchScriptModel().build(3, (3, 8, 8))


class _Gradient(Explainer):
    def explain(self, model, inputs, targets):
        x = inputs.clone().requires_grad_(True)
        return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]


class _FolderCheck(Metric):
    """Share of the evaluated images with finite attributions; passes the folder as a SoCo metric will."""

    higher_is_better = True
    category = "sanity"
    dataset = "soco.images"
    model = "soco.torchscript"
    options: ClassVar = (Param("images", "", "image folder"), Param("size", 8, "image side", int))
    num_imgs = 2

    def dataset_options(self):
        return dataset_options(self.opts["images"], self.opts["size"])

    def compute(self, ctx, explainer):
        finite = [bool(np.isfinite(s.attribution).all()) for _, s in ctx.attribution_batches(explainer)]
        return Result(value=float(np.mean(finite)), n=len(ctx.index))


class _Plugin:
    """The registrations of soco.images and soco.torchscript, with a check metric and a gradient."""

    @hookimpl
    def register_datasets(self, register):
        register("images", "attribench_soco.folder:make_images", description="A user's image folder")

    @hookimpl
    def register_models(self, register):
        register("torchscript", "attribench_soco.folder:TorchScriptModel", description="A TorchScript file")

    @hookimpl
    def register_metrics(self, register):
        register("folder_check", _FolderCheck, description="Finite attributions on the folder")

    @hookimpl
    def register_explainers(self, register):
        register("grad", _Gradient, description="Gradient")


def test_a_run_uses_the_users_model_file_on_the_users_images(tmp_path):
    root, path = _folder(tmp_path / "images"), _scripted(tmp_path / "model.pt")
    registry = plugin_registry({"soco": _Plugin()})
    request = RunRequest(
        metric="soco.folder_check",
        explainers=["soco.grad"],
        options={"images": str(root)},
        weights=path,
        store=tmp_path / "store.h5",
    )
    ctx = prepare(registry, request)
    images = torch.from_numpy(ctx.dataset.images)
    assert images.shape == (3, 3, 8, 8) and len(ctx.index) == 2
    assert torch.equal(ctx.load_model("soco.torchscript")(images), torch.jit.load(str(path))(images))
    outcome = run(registry, request)
    assert outcome.results["soco.grad"].value == 1.0 and outcome.verification["source"] == "file"
    with pytest.raises(
        ModelError, match=re.escape("soco.torchscript has no training recipe here; pass its weights")
    ):
        prepare(registry, RunRequest(**{**vars(request), "weights": None}))
