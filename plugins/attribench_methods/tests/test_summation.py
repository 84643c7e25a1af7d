"""DeepLIFT's and DeepSHAP's summation-to-delta on real architectures: exact through overlapping max-pools,
the per-image gap recorded (by hand for a functional ReLU) with its cause named, and the refusal of models
where DeepLIFT is not defined (attention, input normalisation)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from attribench_methods.model_checks import Rescaled, UnsupportedModelError, WindowedMaxPool2d, deeplift_model
from attribench_methods.propagation import DeepLift
from attribench_methods.shap import DeepShap
from attribench_methods.summation import deeplift_nonlinearities
from torch import nn

from attribench_core import reference_models


class FunctionalStep(nn.Module):
    """logit 0 = Σ relu(x − ½) with the ReLU in forward, invisible to DeepLIFT's module rules."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(x.flatten(1) - 0.5))


class Logits(nn.Module):
    """A Hugging Face classifier's `.logits`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a 1-channel image, then a linear read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.key = nn.Linear(1, 2), nn.Linear(1, 2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # [B, 16, 1]
        weights = torch.softmax(self.query(tokens) @ self.key(tokens).transpose(1, 2), -1)
        return self.fc((weights @ tokens).flatten(1))


def calibrated(model: nn.Module, size: int = 32) -> nn.Module:
    """`model` in eval mode with BatchNorm statistics of random images (freshly built nets have unit
    statistics, which makes some of them nearly constant)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 3, size, size))
    return model.eval()


def batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, size, size, generator=generator), torch.tensor([0, 1, 2])


def background(n: int) -> torch.Tensor:
    return torch.rand((n, 3, 32, 32), generator=torch.Generator().manual_seed(2))


def test_the_gap_of_a_functional_relu_by_hand() -> None:
    # DeepLIFT differentiates F.relu at x: Σ attributions = Σ_{x>½} x = 0.75 + 1.0, while
    # f(x) − f(0) = Σ relu(x − ½) = 0.25 + 0.5; gap = 1 / 0.75. The second image is all below ½: gap 0/0 → 0.
    x = torch.tensor([[0.25, 0.75, 1.0], [0.1, 0.2, 0.3]]).view(2, 1, 1, 3)
    explainer = DeepLift()
    with pytest.warns(RuntimeWarning) as caught:
        explainer(FunctionalStep(), x, torch.tensor([0, 0]))
    torch.testing.assert_close(explainer.diagnostics["summation_gap"], torch.tensor([4 / 3, 0.0]))
    message = str(caught[0].message)
    assert message.startswith(
        "DeepLift: summation-to-delta misses f(x) − f(0) by up to 133 % on 1 of 2 images"
    )
    assert "F.relu in the model's forward (FunctionalStep) has no DeepLIFT rule" in message
    assert explainer.diagnostic_notes["summation_gap"] in message


def test_deepshap_gap_is_against_the_mean_background_by_hand() -> None:
    # Backgrounds b1 = 0 and b2 = 1 for the first logit of FunctionalStep at x = (0.25, 0.75, 1.0):
    # against b1 Σ = 1.75 (as above); against b2 the gradient at x gives Σ = 1·(0.75 − 1) + 1·(1 − 1) = −0.25;
    # mean Σ = 0.75. f(x) = 0.75, mean f(b) = (0 + 1.5) / 2 = 0.75: gain 0, gap |0.75| / 1e-12.
    # Scale b2 to 0.9 instead: f(b2) = 3 · 0.4 = 1.2, Σ against b2 = −0.15 + 0.1 = −0.05; mean Σ = 0.85,
    # gain = 0.75 − 0.6 = 0.15, gap = 0.7 / 0.15.
    x = torch.tensor([0.25, 0.75, 1.0]).view(1, 1, 1, 3)
    backgrounds = torch.stack([torch.zeros(1, 1, 3), torch.full((1, 1, 3), 0.9)])
    explainer = DeepShap(background_size=2)
    with pytest.warns(RuntimeWarning, match="F.relu in the model's forward"):
        explainer(FunctionalStep(), x, torch.tensor([0]), references=lambda n: backgrounds[:n])
    torch.testing.assert_close(explainer.diagnostics["summation_gap"], torch.tensor([0.7 / 0.15]))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    [
        (3, 2, 1, 1, False),
        (3, 2, 1, 1, True),
        (3, 1, 0, 1, False),
        ((3, 2), (2, 1), 1, 1, True),
        (2, 1, 0, 2, False),
    ],
)
def test_windowed_max_pool_computes_max_pool(kernel, stride, padding, dilation, ceil_mode) -> None:
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    for height, width in itertools.product((7, 8), (9,)):
        x = torch.randn(2, 3, height, width)
        assert torch.equal(WindowedMaxPool2d(pool)(x), pool(x))


def test_deeplift_model_replaces_only_overlapping_max_pools() -> None:
    model = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)).eval()
    clone = deeplift_model(model, torch.rand(1, 3, 8, 8), method="test")
    assert isinstance(clone[0], WindowedMaxPool2d) and type(clone[1]) is nn.MaxPool2d
    assert type(model[0]) is nn.MaxPool2d  # the caller's model is untouched


@pytest.mark.parametrize("build", [DeepLift, lambda: DeepShap(background_size=4)])
def test_resnet18_with_its_overlapping_stem_pool_sums_exactly(build) -> None:
    # Captum alone misses f(x) − f(0) here (its max_unpool2d overwrites arg-maxes that windows share).
    model = calibrated(reference_models.resnet18(num_classes=4, width=4))
    explainer = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no summation warning
        explainer(model, *batch(), references=background)
    assert explainer.diagnostics["summation_gap"].max() < 1e-4
    assert explainer.diagnostic_notes == {}


@pytest.mark.parametrize("build", [DeepLift, lambda: DeepShap(background_size=4)])
def test_efficientnet_with_silu_and_squeeze_excitation_sums_exactly(build) -> None:
    # Before: gaps of 180 % (median) to 2,000 %, from SiLU (no rule in Captum) and the gates s(x)·x.
    model = calibrated(reference_models.efficientnet_b0(num_classes=4, width_mult=0.25, depth_mult=0.25))
    explainer = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer(model, *batch(), references=background)
    assert explainer.diagnostics["summation_gap"].max() < 1e-4


class Product(nn.Module):
    """logit 0 = x₁ · x₂, a product of two input-dependent tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[..., :1] * x[..., 1:]).flatten(1)


def test_products_get_the_shapley_multipliers_by_hand() -> None:
    # Against the zero reference each factor gets ½(other factor at x + at 0): (½·3·2, ½·2·3) = (3, 3).
    # Against b = (1, 1) (DeepSHAP): x₁ gets ½(3 + 1)·(2 − 1) = 2, x₂ gets ½(2 + 1)·(3 − 1) = 3; sum 6 − 1.
    x = torch.tensor([2.0, 3.0]).view(1, 1, 1, 2)
    torch.testing.assert_close(
        DeepLift()(Product(), x, torch.tensor([0])).flatten(), torch.tensor([3.0, 3.0])
    )
    ones = torch.ones(1, 1, 1, 2)
    got = DeepShap(background_size=1)(Product(), x, torch.tensor([0]), references=lambda n: ones)
    torch.testing.assert_close(got.flatten(), torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("activation", [nn.SiLU, nn.GELU, nn.Hardswish, nn.ReLU6])
def test_element_wise_activations_get_the_rescale_rule_by_hand(activation) -> None:
    # f = w · act(x) with the zero reference: Rescale gives input i exactly w_i · (act(x_i) − act(0)); at
    # x_i = 0 (no difference from the reference) the contribution is 0.
    model = nn.Sequential(nn.Flatten(), activation(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[2.0, 3.0, -1.0]]))
    x = torch.tensor([-1.0, 0.0, 2.5]).view(1, 1, 1, 3)
    explainer = DeepLift()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = explainer(model.eval(), x, torch.tensor([0]))
    act = activation()
    expected = torch.tensor([2.0, 3.0, -1.0]) * (act(x.flatten()) - act(torch.zeros(3)))
    torch.testing.assert_close(got.flatten(), expected)
    assert explainer.diagnostics["summation_gap"] < 1e-6
    clone, pair = deeplift_model(model, x, method="t"), x.repeat(2, 1, 1, 1)
    assert isinstance(clone[1], Rescaled) and torch.equal(clone(pair), model(pair))


def test_deepshap_sums_exactly_through_gelu_against_a_training_background() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Conv2d(4, 4, 3), nn.SiLU(), nn.Flatten())
    model.append(nn.Linear(4 * 28 * 28, 3))
    explainer = DeepShap(background_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer(model.eval(), *batch(), references=background)
    assert explainer.diagnostics["summation_gap"].max() < 1e-4


class Swish(nn.Module):
    """A GELU module (ruled), then swish and a max written in forward (torch.sigmoid and amax: no rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(3, 2, 3), nn.GELU(), nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x))
        x = x * torch.sigmoid(x) + torch.cat([x, x], 1)[:, :2]
        return self.fc(x.amax((2, 3)))


def test_the_probe_names_functional_non_linearities_and_skips_ruled_and_linear_ones(zoo) -> None:
    probe = torch.rand(1, 3, 8, 8)
    found = deeplift_nonlinearities(deeplift_model(Swish().eval(), probe, method="t"), probe)
    assert [str(f) for f in found] == [  # the product x·σ(x) has a rule (`ProductRule`)
        "torch.sigmoid in the model's forward (Swish)",
        "Tensor.amax in the model's forward (Swish)",
    ]
    assert deeplift_nonlinearities(zoo.SmallCNN().eval(), torch.rand(1, 3, 16, 16)) == []


@pytest.mark.parametrize("build", [DeepLift, lambda: DeepShap(background_size=2)])
def test_attention_is_refused_naming_the_module(build) -> None:
    expected = (
        r"matrix product of two input-dependent tensors \(matmul\) in the model's forward \(SelfAttention\)"
    )
    with pytest.raises(UnsupportedModelError, match=expected + ".*use integrated gradients"):
        build()(
            SelfAttention(),
            torch.rand(2, 1, 4, 4),
            torch.tensor([0, 1]),
            references=lambda n: torch.rand(n, 1, 4, 4),
        )


def test_hugging_face_resnet_with_its_overlapping_stem_pool_sums_exactly() -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    explainer = DeepLift()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer(Logits(reference_models.tiny_hf_model("resnet")).eval(), *batch())
    assert explainer.diagnostics["summation_gap"].max() < 1e-4


@pytest.mark.parametrize(
    ("architecture", "module"),
    [
        ("vit", r"module 'model\.vit\.layers\.0\.layernorm_before' \(LayerNorm\)"),
        ("convnext", r"\(ConvNextLayerNorm\)"),
    ],
)
def test_hugging_face_transformers_and_convnext_are_refused(architecture, module) -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Logits(reference_models.tiny_hf_model(architecture)).eval()
    with pytest.raises(
        UnsupportedModelError, match=r"DeepLift: normalisation by the input's statistics .*" + module
    ):
        DeepLift()(model, *batch())
