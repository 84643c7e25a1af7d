"""Canonicalisation of models for hook-based methods, and the clear errors and warnings for models that a
method cannot explain correctly."""

from __future__ import annotations

import re
import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from attribench_methods.model_checks import PerCall, UnsupportedModelError, call_counts, canonical_copy
from torch import nn

from attribench_core.errors import ParameterError
from attribench_core.model import ModelInfo, attach_info


class FunctionalReLU(nn.Module):
    """ReLUs applied with F.relu: invisible to module hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x) - 0.2).flatten(1))


class ConvTwice(nn.Module):
    """The last (CAM) conv layer runs twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(torch.relu(self.conv(x))).flatten(1))


class OwnParameter(nn.Module):
    """A container that also uses a parameter of its own in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.scale


def test_canonical_copy_splits_reused_modules_and_turns_off_inplace(zoo, cnn, images) -> None:
    reused = zoo.ReusedReLUCNN(cnn).eval()
    clone = canonical_copy(reused, images, method="test")
    assert reused.relu.inplace and isinstance(reused.relu, nn.ReLU)  # the original is untouched
    assert isinstance(clone.relu, PerCall) and len(clone.relu.copies) == 2
    assert not any(getattr(m, "inplace", False) for m in clone.modules())
    assert set(call_counts(clone, images[:1]).values()) == {1}
    torch.testing.assert_close(clone(images), reused(images))
    torch.testing.assert_close(clone(images), clone(images))  # the call counter restarts every forward


def test_canonical_copy_replaces_every_alias_of_a_shared_module(zoo, images) -> None:
    clone = canonical_copy(zoo.TwoBranches(shared=True), images, method="test")
    assert clone.relu is clone.relu2 and isinstance(clone.relu, PerCall)


def test_a_model_that_cannot_be_copied_is_refused_by_name(make, cnn, images, targets) -> None:
    cnn.lock = threading.Lock()
    with pytest.raises(UnsupportedModelError, match=r"GuidedBackprop .* cannot be deep-copied"):
        make("guided_backprop")(cnn, images, targets)


@pytest.mark.parametrize("name", ["guided_backprop", "deconvnet"])
def test_modified_backprop_refuses_a_model_without_relu_modules(make, images, targets, name) -> None:
    with pytest.raises(UnsupportedModelError, match=r"nn\.ReLU"):
        make(name)(FunctionalReLU(), images, targets)


def test_deeplift_warns_when_summation_to_delta_fails(make, images, targets) -> None:
    torch.manual_seed(0)
    with pytest.warns(
        RuntimeWarning, match=r"F\.relu in the model's forward \(FunctionalReLU\) has no DeepLIFT rule"
    ):
        make("deeplift")(FunctionalReLU(), images, targets)


def test_gradcam_refuses_a_cam_layer_that_runs_twice(make, images, targets) -> None:
    with pytest.raises(UnsupportedModelError, match="CAM layer 'conv' runs 2 times"):
        make("gradcam")(ConvTwice(), images, targets)


def test_gradcam_uses_the_declared_cam_layer(make, cnn, images, targets) -> None:
    last = make("gradcam")(cnn, images, targets)
    attach_info(cnn, ModelInfo(cam_layer="features.0"))
    first = make("gradcam")(cnn, images, targets)
    assert first.shape == last.shape and not torch.allclose(first, last)


def test_lrp_names_an_unsupported_layer(zoo, make, images, targets) -> None:
    model = zoo.SmallCNN()
    model.features[1] = nn.Tanh()
    with pytest.raises(UnsupportedModelError, match=r"module 'features\.1' \(Tanh\) has no LRP rule"):
        make("lrp_epsilon")(model, images, targets)


def test_lrp_names_a_container_with_its_own_parameters(make, images, targets) -> None:
    with pytest.raises(UnsupportedModelError, match=r"the model \(OwnParameter\) uses its own parameters"):
        make("lrp_epsilon")(OwnParameter(), images, targets)


class LeafLinear(nn.Module):
    """A classifier with no submodules: its parameters are used functionally."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 3 * 16 * 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_lrp_refuses_a_model_without_layer_modules(make, images, targets) -> None:
    with pytest.raises(UnsupportedModelError, match=r"the model \(LeafLinear\) has no layer modules"):
        make("lrp_epsilon")(LeafLinear(), images, targets)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": 0}, "'steps' must be at least 1"),
        ({"internal_batch_size": 0}, "'internal_batch_size' must be at least 1"),
    ],
)
def test_ig_rejects_bad_parameters(make, cnn, images, targets, params, message) -> None:
    """Out-of-range parameters are refused when the explainer is made (the CLI: when it reads the
    command, exit 2), not when a batch reaches them."""
    with pytest.raises(ParameterError, match=message):
        make("ig", **params)


def test_smoothgrad_and_lrp_reject_bad_parameters(make, cnn, images, targets) -> None:
    with pytest.raises(ParameterError, match="'samples' must be at least 1"):
        make("smoothgrad", samples=0)
    with pytest.raises(ParameterError, match="'sigma' must be at least 0"):
        make("smoothgrad_sq", sigma=-1.0)
    with pytest.raises(ParameterError, match=re.escape("'epsilon' must be greater than 0; got 0.0")):
        make("lrp_epsilon", epsilon=0.0)
    with pytest.raises(
        ParameterError, match=re.escape("'relative_epsilon' must be greater than 0; got -1.0")
    ):
        make("lrp_epsilon", relative_epsilon=-1.0)


def test_malformed_batches_are_refused_clearly(make, cnn, images, targets) -> None:
    with pytest.raises(ValueError, match="images"):
        make("gradient")(cnn, images[0], targets)
    with pytest.raises(ValueError, match="2 targets for a batch of 3"):
        make("gradient")(cnn, images, targets[:2])
    attach_info(cnn, ModelInfo(num_classes=5))
    with pytest.raises(ValueError, match=r"Targets must lie in \[0, 5\)"):
        make("ig")(cnn, images, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match=r"Targets must lie in \[0, 5\)"):
        make("smoothgrad")(cnn, images, torch.tensor([0, -1, 1]))


def test_inference_tensors_are_accepted(zoo, make, cnn, targets) -> None:
    with torch.inference_mode():
        frozen = torch.rand(3, 3, 16, 16)
    expected = make("gradient")(cnn, frozen.clone(), targets)
    torch.testing.assert_close(make("gradient")(cnn, frozen, targets), expected)


def test_deeplift_sums_exactly_through_an_adaptive_max_pool(zoo, make) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    x, t = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no summation-gap warning
        out = make("deeplift")(model, x, t)
    gain = zoo.target_logits(model, x, t) - zoo.target_logits(model, torch.zeros_like(x), t)
    torch.testing.assert_close(out.flatten(1).sum(1), gain, rtol=1e-4, atol=1e-5)
    assert isinstance(model[5], nn.AdaptiveMaxPool2d)  # the caller's model is untouched


def test_deeplift_refuses_an_adaptive_max_pool_that_is_not_plain_pooling(make) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(5), nn.Flatten(), nn.Linear(100, 5)
    )
    with pytest.raises(
        UnsupportedModelError, match=r"'2' \(AdaptiveMaxPool2d\) pools \(14, 14\) to \(5, 5\)"
    ):
        make("deeplift")(model.eval(), torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
