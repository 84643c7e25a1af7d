"""The reference architectures match torchvision's parameter counts and layout, and run at small widths."""

import pytest
import torch

from attribench_core import reference_models


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.mark.parametrize(
    ("build", "published"),
    [
        (reference_models.resnet18, 11_689_512),
        (reference_models.vgg11_bn, 132_868_840),
        (reference_models.efficientnet_b0, 5_288_548),
    ],
)
def test_full_width_parameter_counts_equal_torchvisions(build, published):
    with torch.device("meta"):  # counting needs shapes only, not 530 MB of VGG weights
        model = build()
    assert parameter_count(model) == published


def test_resnet18_has_torchvisions_state_dict_names_and_reused_relu():
    model = reference_models.resnet18(width=8)
    names = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.num_batches_tracked", "fc.bias"} <= names  # fmt: skip
    assert "layer1.0.downsample.0.weight" not in names
    block = model.layer1[0]
    calls = []
    block.relu.register_forward_hook(lambda *_: calls.append(1))
    block(torch.rand(1, 8, 8, 8))
    assert len(calls) == 2
    assert (model.maxpool.kernel_size, model.maxpool.stride, model.maxpool.padding) == (3, 2, 1)


def test_vgg11_bn_and_efficientnet_state_dict_names():
    vgg = set(reference_models.vgg11_bn(width=2, classifier_width=8).state_dict())
    assert {"features.0.weight", "features.1.running_var", "features.4.weight", "classifier.6.bias"} <= vgg
    efficientnet = set(reference_models.efficientnet_b0(width_mult=0.25, depth_mult=0.25).state_dict())
    assert {
        "features.0.0.weight",
        "features.1.0.block.0.0.weight",  # first stage: no expansion, depthwise first
        "features.1.0.block.1.fc1.bias",
        "features.2.0.block.0.1.running_mean",  # expansion conv's BN
        "features.2.0.block.1.0.weight",  # depthwise conv
        "features.2.0.block.2.fc2.weight",
        "features.2.0.block.3.1.bias",
        "features.8.0.weight",
        "classifier.1.weight",
    } <= efficientnet


@pytest.mark.parametrize(
    "build",
    [
        lambda: reference_models.resnet18(num_classes=5, width=8),
        lambda: reference_models.vgg11_bn(num_classes=5, width=4, classifier_width=16),
        lambda: reference_models.efficientnet_b0(num_classes=5, width_mult=0.25, depth_mult=0.25),
    ],
)
def test_small_widths_classify_64px_images(build):
    torch.manual_seed(0)
    model = build().eval()
    logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    torch.manual_seed(0)
    assert torch.equal(build().eval()(torch.rand(2, 3, 64, 64)), logits)  # seeded by the caller


def test_efficientnet_blocks_have_depthwise_convs_silu_and_squeeze_excitation():
    model = reference_models.efficientnet_b0(width_mult=0.25, depth_mult=0.25)
    block = model.features[2][0]
    depthwise = block.block[1][0]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels
    assert isinstance(block.block[2], reference_models.SqueezeExcitation)
    assert any(isinstance(module, torch.nn.SiLU) for module in model.modules())
    assert model.features[1][0].use_res_connect  # 8 -> 8 channels at stride 1 at this width: residual add
    assert not block.use_res_connect


@pytest.mark.parametrize("architecture", reference_models.HF_ARCHITECTURES)
def test_tiny_hf_models_return_logits(architecture):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = reference_models.tiny_hf_model(architecture).eval()
    assert model(torch.rand(2, 3, 32, 32)).logits.shape == (2, 4)
