"""A user's own model through `--model`: a Python file or module callable, a TorchScript file, a saved
Hugging Face classifier; `--weights` state dicts, `--normalize`, `--cam-layer`, and one-line errors."""

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.model import last_conv_layer, model_info
from attribench_core.model_sources import model_source, parse_normalization
from attribench_core.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, Normalized
from attribench_core.plugins import get_registry
from attribench_core.runner import RunRequest, prepare
from attribench_core.state_dict import load_state_dict_file
from attribench_core.weights import weights_hash

NET = textwrap.dedent(
    '''
    """A small torchvision-style ResNet: BatchNorm, in-place ReLUs reused, residual adds, a strided 1x1
    shortcut registered last, an overlapping stem max-pool."""

    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)
                self.downsample = nn.Sequential(shortcut, nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)


    class ResNet(nn.Module):
        def __init__(self, num_classes=4, width=8):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = Block(width, width, 1)
            self.layer2 = Block(width, 2 * width, 2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.avgpool(self.layer2(self.layer1(x))), 1))


    def build(num_classes):
        torch.manual_seed(0)
        return ResNet(num_classes)


    def three_classes():
        return ResNet(3)


    def broken():
        raise RuntimeError("no GPU here")


    def not_a_module():
        return {"weights": 1}


    class Output:
        def __init__(self, logits):
            self.logits = logits


    class WithOutputObject(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build(4)

        def forward(self, x):
            return Output(self.net(x))
    '''
)


@pytest.fixture
def net_file(tmp_path):
    """net.py in the working folder (tmp_path), its module, and a checkpoint of `build` under
    "state_dict"."""
    (tmp_path / "net.py").write_text(NET)
    spec = importlib.util.spec_from_file_location("net", tmp_path / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = module.build(4)
    with torch.no_grad():
        for bn in (m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)  # weights that differ from a fresh build
    torch.save({"state_dict": network.state_dict(), "epoch": 3}, tmp_path / "w.pt")
    return module


def run(*args):
    return CliRunner().invoke(
        cli, ["run", "core.relevance_mass", "--num-imgs", "4", "--store", "s.h5", "--json", *args]
    )


def rows(result):
    assert result.exit_code == 0, result.output
    return {r["explainer"]: r for r in json.loads(result.stdout)["results"]}


def test_a_python_file_with_a_checkpoint_runs_gradient_and_gradcam(net_file):
    result = run("--model", "net.py:build", "--weights", "w.pt", "-e", "gradient", "-e", "gradcam")
    found = rows(result)
    assert all(r["n"] == 4 and r["value"] is not None for r in found.values())
    payload = json.loads(result.stdout)
    assert payload["provenance"]["model"] == "file:net.build"
    assert "/file:net.build@" in payload["provenance"]["group"]
    assert payload["models"][0]["source"] == "file"
    # the default CAM layer: the last block's second conv, not the strided 1x1 shortcut registered after it
    assert last_conv_layer(net_file.build(4)) == "layer2.conv2"


def test_the_model_takes_the_weights_given_and_a_module_path_works_too(net_file, tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "__init__.py").write_text("")
    (tmp_path / "zoo" / "resnets.py").write_text(NET)
    request = RunRequest("core.relevance_mass", model="zoo.resnets:build", weights=Path("w.pt"))
    ctx = prepare(get_registry(), request)
    loaded = ctx.resources.model(ctx.model_name)
    assert ctx.model_name == "module:zoo.resnets.build" and loaded.source == "file"
    saved = torch.load(tmp_path / "w.pt")["state_dict"]
    key = "layer1.bn1.running_mean"
    assert torch.equal(loaded.module.state_dict()[key], saved[key])
    assert not loaded.module.training
    built = prepare(get_registry(), RunRequest("core.relevance_mass", model="zoo.resnets:build"))
    assert built.resources.model(built.model_name).source == "built"
    for name in ("zoo", "zoo.resnets"):  # imported from this test's folder: forget them
        del sys.modules[name]


def test_normalize_puts_a_first_module_in_front_and_changes_the_store_key(net_file):
    def loaded(normalize):
        request = RunRequest("core.relevance_mass", model="net.py:build", normalize=normalize)
        ctx = prepare(get_registry(), request)
        return ctx.resources.model(ctx.model_name)

    plain, imagenet = loaded(None), loaded("imagenet")
    assert isinstance(imagenet.module, Normalized) and not isinstance(plain.module, Normalized)
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(imagenet.module(x), plain.module((x - mean) / std), atol=1e-6)
    assert imagenet.weights_hash != plain.weights_hash
    assert loaded("none").weights_hash == plain.weights_hash
    assert parse_normalization("0.5,0.4,0.3/0.2,0.1,0.25") == ((0.5, 0.4, 0.3), (0.2, 0.1, 0.25))


def test_an_output_object_with_logits_is_turned_into_logits(net_file):
    found = rows(run("--model", "net.py:WithOutputObject", "-e", "gradient", "-e", "ig:steps=4"))
    assert all(r["n"] == 4 for r in found.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_runs_gradient_and_hook_based_methods_refuse_in_one_line(net_file, tmp_path):
    torch.jit.trace(net_file.build(4).eval(), torch.rand(1, 3, 32, 32)).save(str(tmp_path / "model.pt"))
    found = rows(run("--model", "model.pt", "-e", "gradient", "-e", "gradcam"))
    assert found["methods.gradient"]["n"] == 4
    (reason,) = found["methods.gradcam"]["skipped_reasons"]
    assert "GradCAM needs module hooks, which TorchScript hides; pass the model as Python: --model" in reason


def test_cam_layer_names_the_layer_and_enters_the_store_key(net_file):
    first = rows(run("--model", "net.py:build", "-e", "gradcam"))
    layer1 = run("--model", "net.py:build", "-e", "gradcam", "--cam-layer", "layer1.conv2")
    assert rows(layer1)["methods.gradcam"]["value"] != first["methods.gradcam"]["value"]
    ctx = prepare(
        get_registry(),
        RunRequest(
            "core.relevance_mass", model="net.py:build", normalize="imagenet", cam_layer="layer1.conv2"
        ),
    )
    assert model_info(ctx.resources.model(ctx.model_name).module).cam_layer == "network.layer1.conv2"


def test_the_spec_gives_a_stable_store_name():
    assert model_source("core.toy_cnn") is None and model_source("toy_cnn") is None
    assert model_source("nets/my net.py:build").name == "file:my_net.build"
    assert model_source("pkg.nets:resnet18").name == "module:pkg.nets.resnet18"
    assert model_source("exports/model.ts").name == "torchscript:model"
    assert model_source("hf:models/vit-tiny/").name == "hf:vit-tiny"


@pytest.mark.parametrize("key", [None, "model", "state_dict", "model_state_dict"])
def test_a_state_dict_is_read_bare_or_under_a_common_key(tmp_path, key):
    source, target = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    torch.save(source.state_dict() if key is None else {key: source.state_dict()}, tmp_path / "w.pt")
    load_state_dict_file(target, tmp_path / "w.pt")
    assert torch.equal(target.weight, source.weight)


ERRORS = [
    (["--model", "nope.py:build"], 2, "Model file 'nope.py' does not exist."),
    (["--model", "net.py:buidl"], 2, "'net.py' has no callable 'buidl'. Did you mean build?"),
    (["--model", "nets.nope:build"], 2, "No module named 'nets'"),
    (["--model", "net.py"], 2, "name the callable that builds the network, e.g. net.py:build"),
    (["--model", "net.py:broken"], 1, "net.py:broken raised RuntimeError: no GPU here"),
    (["--model", "net.py:not_a_module"], 1, "net.py:not_a_module returned a dict, not a torch.nn.Module"),
    (["--model", "missing.pt"], 2, "Model file 'missing.pt' does not exist."),
    (
        ["--model", "w.pt"],
        2,
        "'w.pt' is not a TorchScript file (torch.jit.save); for a state dict pass --model",
    ),
    (
        ["--model", "net.py:three_classes"],
        1,
        "model gives 3 logits but dataset core.toy has 4 classes; for an image folder, list the model's "
        "classes in output order in classes.txt",
    ),
    (["--model", "net.py:build", "--normalize", "0.5,0.5/0.2"], 2, "--normalize takes imagenet, none or"),
    (["--model", "net.py:build", "--normalize", "imagenett"], 2, "got 'imagenett'"),
    (
        ["--model", "net.py:build", "--normalize", "0.5/0.5"],
        2,
        "--normalize gives a mean and std for 1 channel(s) but the images of core.toy have 3.",
    ),
    (["--model", "core.toy_cnn", "--normalize", "imagenet"], 2, "--normalize applies to your own model"),
    (
        ["--model", "net.py:build", "--cam-layer", "layer2.conv"],
        2,
        "--cam-layer: the model has no layer 'layer2.conv'. Did you mean layer2.conv2, layer2.conv1",
    ),
    (["--model", "net.py:build", "--cam-layer", "layer2:grid"], 2, "--cam-layer takes NAME or NAME:tokens"),
    (["--model", "hf:net.py"], 2, "'net.py' holds no saved Hugging Face model (no config.json)"),
]


@pytest.mark.parametrize(("args", "code", "message"), ERRORS)
def test_bad_models_and_options_are_one_line_errors(net_file, args, code, message):
    result = run("-e", "gradient", *args)
    assert result.exit_code == code, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        (
            "ResNet(4, width=4)",
            "'conv1.weight' has shape [4, 3, 3, 3] in the file but [8, 3, 3, 3] in the model",
        ),
        ("torch.nn.Linear(2, 2)", "missing key 'conv1.weight' (and"),
        (None, "the file holds more than tensors (a whole pickled model?); save model.state_dict() instead"),
    ],
)
def test_weights_that_do_not_fit_name_the_first_mismatch(net_file, tmp_path, saved, message):
    whole = torch.nn.Linear(2, 2)  # a pickled module, not its state dict
    torch.save(whole if saved is None else eval(saved, vars(net_file)).state_dict(), tmp_path / "other.pt")
    result = run("-e", "gradient", "--model", "net.py:build", "--weights", "other.pt")
    assert result.exit_code == 1
    assert f"Weights in 'other.pt' do not fit model file:net.build: {message}" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_hf_without_transformers_names_the_install(net_file, tmp_path, monkeypatch):
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    result = run("-e", "gradient", "--model", "hf:vit")
    assert result.exit_code == 1
    assert result.output.strip() == 'Error: hf:DIR needs the transformers package: pip install -e ".[hf]"'


def test_hf_resnet_runs_gradient_ig_and_gradcam(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4
    )
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(config).save_pretrained(tmp_path / "resnet")
    found = rows(run("--model", "hf:resnet", "-e", "gradient", "-e", "ig:steps=4", "-e", "gradcam"))
    assert found["methods.gradient"]["n"] == found["methods.ig:steps=4"]["n"] == 4
    # random weights: some Grad-CAM maps are all zero (skipped by the metric), none failed
    assert not any("explainer failed" in reason for reason in found["methods.gradcam"]["skipped_reasons"])


def test_hf_vit_refuses_gradcam_unless_given_a_token_layer_and_uses_its_preprocessor(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=4,
    )
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    found = rows(run("--model", "hf:vit", "-e", "gradient", "-e", "ig:steps=4", "-e", "gradcam"))
    assert found["methods.gradient"]["n"] == found["methods.ig:steps=4"]["n"] == 4
    (reason,) = found["methods.gradcam"]["skipped_reasons"]
    assert (
        "GradCAM: the model has no convolutional feature map; pass --cam-layer NAME:tokens for a transformer "
        "block whose output is [B, 1+h*w, D]" in reason
    )
    # the last block's output does not reach the class token; its first LayerNorm does (pytorch-grad-cam)
    tokens = run("--model", "hf:vit", "-e", "gradcam", "--cam-layer", "vit.layers.0.layernorm_before:tokens")
    assert rows(tokens)["methods.gradcam"]["n"] == 4
    preprocessor = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    (tmp_path / "vit" / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    ctx = prepare(get_registry(), RunRequest("core.relevance_mass", model="hf:vit"))
    normalize = ctx.resources.model(ctx.model_name).module.normalize
    assert normalize.mean.tolist() == [0.5] * 3 and normalize.std.tolist() == [0.25] * 3


def test_the_default_cam_layer_skips_patch_embeddings():
    nn = torch.nn
    convnext = nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4),  # stem: a patch embedding
        nn.Conv2d(8, 8, 7, padding=3, groups=8),
        nn.Conv2d(8, 16, 2, stride=2),  # downsampling: a patch embedding too
        nn.Conv2d(16, 16, 7, padding=3, groups=16),  # the last stage's depthwise conv
        nn.Flatten(),
    )
    assert last_conv_layer(convnext) == "3"
    mobile_head = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 32, 1))
    assert last_conv_layer(mobile_head) == "1"
    assert last_conv_layer(nn.Sequential(nn.Conv2d(3, 16, 8, stride=8), nn.Flatten())) is None  # a ViT


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_weights_hash_covers_torchscript_inside_a_wrapper():
    class Scaled(torch.nn.Module):
        def __init__(self, scale: float):
            super().__init__()
            self.scale = scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    def wrapped(scale):
        return Normalized(Normalize([0.5], [0.25]), torch.jit.script(Scaled(scale)))

    assert weights_hash(wrapped(1.0)) != weights_hash(wrapped(2.0))
    assert weights_hash(wrapped(1.0)) == weights_hash(wrapped(1.0))
