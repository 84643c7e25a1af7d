"""CAM layers on models given as TorchScript or as transformers: hook-based methods refuse TorchScript in
one line, and Grad-CAM reads a transformer block's tokens as a feature map (`NAME:tokens`), refuses a layer
that runs twice and runs a training model without touching its statistics."""

from __future__ import annotations

import warnings

import pytest
import torch
from attribench_methods.model_checks import UnsupportedModelError
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from attribench_core.errors import ModelError
from attribench_core.model import ModelInfo, attach_info
from attribench_core.normalization import Normalize, Normalized

HOOK_BASED = [
    "guided_backprop",
    "deconvnet",
    "gradcam",
    "guided_gradcam",
    "deeplift",
    "deepshap",
    "lrp_epsilon",
    "lrp_z",
    "lrp_alpha1beta0_flat",
    "lrp_alpha2beta1_flat",
    "deep_taylor",
    "deeplift_rc",
    "iba",
]


@pytest.fixture
def scripted(cnn, images) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit is deprecated from torch 2.10, still widely used
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(cnn, images[:1])


@pytest.mark.parametrize("name", HOOK_BASED)
@pytest.mark.parametrize("wrapped", [False, True])
def test_hook_based_methods_refuse_torchscript_in_one_line(make, scripted, images, targets, name, wrapped):
    model = Normalized(Normalize([0.5] * 3, [0.25] * 3), scripted) if wrapped else scripted
    hint = "needs module hooks, which TorchScript hides; pass the model as Python: --model file.py:build"
    with pytest.raises(ModelError, match=rf"^\w+ {hint}$"):
        make(name)(model, images, targets)


def test_gradient_methods_run_on_torchscript(make, cnn, scripted, images, targets) -> None:
    assert torch.allclose(make("gradient")(scripted, images, targets), make("gradient")(cnn, images, targets))


class PatchTokens(nn.Module):
    """A feature map `[B,D,h,w]` as transformer tokens `[B, 1+h*w, D]`, behind a learned class token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls.expand(len(grid), -1, -1), grid.flatten(2).transpose(1, 2)], dim=1)


class TokenNet(nn.Module):
    """conv → tokens → tanh → mean over tokens → linear: the block `tokens` holds the conv map `grid`."""

    def __init__(self) -> None:
        super().__init__()
        self.grid = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.tokens = PatchTokens(6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.tokens(self.grid(x))).mean(dim=1))


def test_gradcam_on_tokens_equals_gradcam_on_the_map_they_hold(make, targets) -> None:
    torch.manual_seed(0)
    model = TokenNet().eval()
    images = torch.rand(3, 3, 16, 8)  # not square: an 8×4 grid of 32 patch tokens
    attach_info(model, ModelInfo(cam_layer="tokens:tokens"))
    tokens = make("gradcam")(model, images, targets)
    expected = LayerGradCam(model, model.grid).attribute(images, target=targets, relu_attributions=True)
    expected = LayerAttribution.interpolate(expected, (16, 8), interpolate_mode="bilinear")
    assert tokens.shape == (3, 1, 16, 8) and tokens.abs().sum() > 0
    assert torch.allclose(tokens, expected, atol=1e-6)


def test_gradcam_refuses_tokens_from_a_layer_without_them(make, targets) -> None:
    model = TokenNet().eval()
    attach_info(model, ModelInfo(cam_layer="head:tokens"))
    with pytest.raises(
        UnsupportedModelError, match=r"'head:tokens' needs a layer whose output is \[B, 1\+h\*w, D\]"
    ):
        make("gradcam")(model, torch.rand(3, 3, 16, 8), targets)


def test_gradcam_refuses_a_model_whose_only_conv_is_a_patch_embedding(make, targets) -> None:
    model = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)).eval()
    with pytest.raises(
        ModelError, match=r"GradCAM: the model has no convolutional feature map; pass --cam-layer"
    ):
        make("gradcam")(model, torch.rand(3, 3, 16, 16), targets)


class TwiceConv(nn.Module):
    """One convolution applied twice: its activation map is ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(torch.relu(self.conv(x))).mean(dim=(2, 3)))


def test_gradcam_refuses_a_cam_layer_that_runs_twice(make, targets) -> None:
    with pytest.raises(
        UnsupportedModelError, match=r"^GradCAM: the CAM layer 'conv' runs 2 times per forward"
    ):
        make("gradcam")(TwiceConv().eval(), torch.rand(3, 3, 8, 8), targets)


def test_gradcam_leaves_batchnorm_statistics_of_a_training_model_alone(make, targets) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    ).train()
    before = model[1].running_mean.clone()
    cam = make("gradcam").explain(model, torch.rand(3, 3, 8, 8), targets)  # no guard: the copy's own buffers
    assert cam.abs().sum() > 0 and torch.equal(model[1].running_mean, before)
