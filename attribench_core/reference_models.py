"""Reference image classifiers in plain torch, with torchvision's module layout and parameter names.

torchvision cannot be imported beside every torch build, so the architectures that attribution methods must
handle are written out here: a torchvision ResNet-18, VGG-11-BN or EfficientNet-B0 state dict loads into
them unchanged. `width` / `width_mult` shrink them for tests. Initialisation follows torchvision and draws
from torch's global generator: seed it with `torch.manual_seed` before building for reproducible weights.

`tiny_hf_model` builds small Hugging Face classifiers (ResNet, ConvNeXt, ViT) from configs when
`transformers` is installed; they return an output object, not a tensor.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from attribench_core.errors import UsageProblem

# ResNet: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual add; one in-place ReLU module used twice, as torchvision does."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with BasicBlocks: 7x7/2 stem, overlapping 3x3/2 max-pool, four stages, fc."""

    def __init__(self, layers: list[int], num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(num_classes: int = 1000, width: int = 64) -> ResNet:
    """ResNet-18 (He et al. 2016) as torchvision builds it; `width` is the first stage's channels (64)."""
    return ResNet([2, 2, 2, 2], num_classes=num_classes, width=width)


# VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015;
# with batch normalisation (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
# Reducing Internal Covariate Shift", ICML 2015) after every convolution.

_VGG11_LAYOUT: list[int | str] = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]


class VGG(nn.Module):
    """torchvision's VGG: `features`, a 7x7 adaptive average pool, a three-layer `classifier`."""

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int, classifier_width: int):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, classifier_width),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(classifier_width, classifier_width),
            nn.ReLU(True),
            nn.Dropout(p=0.5),
            nn.Linear(classifier_width, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def vgg11_bn(num_classes: int = 1000, width: int = 64, classifier_width: int = 4096) -> VGG:
    """VGG-11 with batch norm (Simonyan & Zisserman 2015; Ioffe & Szegedy 2015) as torchvision builds it.

    `width` is the first conv's channels (64; later ones are 2x, 4x, 8x); `classifier_width` the hidden
    fully connected layers' size (4096).
    """
    layers: list[nn.Module] = []
    in_channels = 3
    for entry in _VGG11_LAYOUT:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_channels = int(entry) * width
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
    return VGG(nn.Sequential(*layers), in_channels, num_classes, classifier_width)


# EfficientNet: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
# ICML 2019. MBConv blocks (inverted residuals with depthwise convs, Sandler et al. 2018) with
# squeeze-and-excitation (Hu et al. 2018), SiLU activations and stochastic depth (Huang et al. 2016).


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never below it nor 10 % under `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormActivation(nn.Sequential):
    """Conv (no bias) - BatchNorm - optional SiLU, indexed 0, 1, 2 like torchvision's Conv2dNormActivation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                (kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gates from a global average: avgpool, fc1 (1x1 conv), SiLU, fc2, sigmoid, multiply."""

    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class StochasticDepth(nn.Module):
    """Drop the residual branch per sample with probability `p` in training (Huang et al. 2016)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * keep.bernoulli_(survival).div_(survival)


@dataclass
class MBConvConfig:
    """One EfficientNet stage: expansion ratio, depthwise kernel, first stride, channels in/out, blocks."""

    expand_ratio: int
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


class MBConv(nn.Module):
    """Expand (1x1) - depthwise (kxk) - squeeze-excitation - project (1x1), residual add when shapes match."""

    def __init__(self, config: MBConvConfig, stochastic_depth_prob: float):
        super().__init__()
        self.use_res_connect = config.stride == 1 and config.input_channels == config.out_channels
        expanded = _make_divisible(config.input_channels * config.expand_ratio)
        layers: list[nn.Module] = []
        if expanded != config.input_channels:
            layers.append(ConvNormActivation(config.input_channels, expanded, 1))
        layers.append(ConvNormActivation(expanded, expanded, config.kernel, config.stride, groups=expanded))
        layers.append(SqueezeExcitation(expanded, max(1, config.input_channels // 4)))
        layers.append(ConvNormActivation(expanded, config.out_channels, 1, activation=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = config.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    """torchvision's EfficientNet: `features` (stem, MBConv stages, 1x1 head), avgpool, `classifier`."""

    def __init__(
        self, stages: list[MBConvConfig], num_classes: int, dropout: float, stochastic_depth_prob: float = 0.2
    ):
        super().__init__()
        layers: list[nn.Module] = [ConvNormActivation(3, stages[0].input_channels, 3, stride=2)]
        total_blocks = sum(stage.num_layers for stage in stages)
        block_id = 0
        for stage in stages:
            blocks: list[nn.Module] = []
            for _ in range(stage.num_layers):
                config = copy.copy(stage)
                if blocks:
                    config.input_channels, config.stride = config.out_channels, 1
                blocks.append(MBConv(config, stochastic_depth_prob * block_id / total_blocks))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        head_channels = 4 * stages[-1].out_channels
        layers.append(ConvNormActivation(stages[-1].out_channels, head_channels, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(head_channels, num_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                init_range = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -init_range, init_range)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def efficientnet_b0(
    num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0
) -> EfficientNet:
    """EfficientNet-B0 (Tan & Le 2019) as torchvision builds it; `width_mult` and `depth_mult` scale the
    channels (rounded to multiples of 8) and the blocks per stage (rounded up), as the paper's compound
    scaling does."""
    stages = [
        MBConvConfig(
            expand_ratio,
            kernel,
            stride,
            _make_divisible(channels_in * width_mult),
            _make_divisible(channels_out * width_mult),
            math.ceil(blocks * depth_mult),
        )
        for expand_ratio, kernel, stride, channels_in, channels_out, blocks in [
            (1, 3, 1, 32, 16, 1),
            (6, 3, 2, 16, 24, 2),
            (6, 5, 2, 24, 40, 2),
            (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3),
            (6, 5, 2, 112, 192, 4),
            (6, 3, 1, 192, 320, 1),
        ]
    ]
    return EfficientNet(stages, num_classes=num_classes, dropout=0.2)


# Hugging Face: tiny classifiers from configs, for tests (no weights are downloaded).

HF_ARCHITECTURES = ("resnet", "convnext", "vit")


def tiny_hf_model(architecture: str, num_labels: int = 4, image_size: int = 32) -> nn.Module:
    """A small randomly initialised Hugging Face image classifier ("resnet", "convnext" or "vit").

    Needs `transformers`; its forward returns an output object whose `.logits` are the class scores.
    """
    import transformers

    if architecture == "resnet":
        config = transformers.ResNetConfig(
            num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=num_labels
        )
        return transformers.ResNetForImageClassification(config)
    if architecture == "convnext":
        config = transformers.ConvNextConfig(
            num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=num_labels
        )
        return transformers.ConvNextForImageClassification(config)
    if architecture == "vit":
        config = transformers.ViTConfig(
            image_size=image_size,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=num_labels,
        )
        return transformers.ViTForImageClassification(config)
    raise UsageProblem(f"unknown Hugging Face architecture {architecture!r}; choose from {HF_ARCHITECTURES}")
