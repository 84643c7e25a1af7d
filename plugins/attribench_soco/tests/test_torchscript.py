"""soco.torchscript: a user's TorchScript model, alone and in runs on their image folder (core.images)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from attribench_soco.plugin import register_metrics, register_models
from attribench_soco.torchscript import TorchScriptModel
from click.testing import CliRunner
from PIL import Image

from attribench_core import Explainer, hookimpl
from attribench_core.cli import cli
from attribench_core.errors import ModelError
from attribench_core.runner import RunRequest, prepare, run
from attribench_core.testing import plugin_registry, tiny_model, using_plugins

# recent torch deprecates TorchScript in favour of torch.export; it still works, and is what users have
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def _folder(root: Path) -> Path:
    """cat: two PNGs, dog: one, empty: no images (three classes)."""
    for name, value in (("cat/a.png", 10), ("cat/b.png", 20), ("dog/c.png", 200)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(root / name)
    (root / "empty").mkdir()
    return root


def _scripted(path: Path, num_classes: int = 3) -> Path:
    torch.jit.script(tiny_model(num_classes)).save(str(path))
    return path


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


class _Plugin:
    """SoCo's models and metrics, with a gradient explainer."""

    register_models = staticmethod(register_models)
    register_metrics = staticmethod(register_metrics)

    @hookimpl
    def register_explainers(self, register):
        register("grad", _Gradient, description="Gradient")


def test_a_soco_metric_runs_the_users_model_file_on_the_users_images(tmp_path):
    root, path = _folder(tmp_path / "images"), _scripted(tmp_path / "model.pt")
    registry = plugin_registry({"soco": _Plugin()})
    request = RunRequest(
        metric="soco.deletion",
        explainers=["soco.grad"],
        options={"on": "images"},
        images=root,
        size=8,
        weights=path,
        store=tmp_path / "store.h5",
    )
    ctx = prepare(registry, request)
    assert ctx.dataset_name == "core.images" and ctx.model_name == "soco.torchscript"
    images = ctx.dataset.batch([0, 1, 2]).images
    assert images.shape == (3, 3, 8, 8) and len(ctx.index) == 3
    assert torch.equal(ctx.load_model("soco.torchscript")(images), torch.jit.load(str(path))(images))
    outcome = run(registry, request)
    assert outcome.results["soco.grad"].n == 3 and outcome.verification["source"] == "file"
    with pytest.raises(
        ModelError, match=re.escape("soco.torchscript has no training recipe here; pass its weights")
    ):
        prepare(registry, RunRequest(**{**vars(request), "weights": None}))


def test_the_cli_takes_images_and_size_for_soco_with_its_model(tmp_path):
    root, path = _folder(tmp_path / "images"), _scripted(tmp_path / "model.pt")
    common = ["--images", str(root), "--size", "8", "--weights", str(path), "-e", "soco.grad", "--json"]
    with using_plugins({"soco": _Plugin()}):
        by_model = CliRunner().invoke(cli, ["run", "soco.road", "--model", "soco.torchscript", *common])
        by_pair = CliRunner().invoke(cli, ["run", "soco.road", "--on", "images", *common])
        missing = CliRunner().invoke(cli, ["run", "soco.road", "--on", "images", "-e", "soco.grad"])
    assert by_model.exit_code == 0, by_model.output
    assert json.loads(by_model.stdout)["results"] == json.loads(by_pair.stdout)["results"]
    assert json.loads(by_model.stdout)["provenance"]["dataset"] == "core.images"
    assert missing.exit_code == 2 and "core.images needs --images DIR" in missing.output
