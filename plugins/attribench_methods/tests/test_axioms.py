"""Axioms and hand-checkable cases: completeness/conservation, Grad-CAM by hand, linear models, SmoothGrad
with no noise, the Sobel kernel on a ramp, the random baseline's range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def sums(attributions: torch.Tensor) -> torch.Tensor:
    return attributions.flatten(1).sum(1)


def logit_gain(zoo, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """f(x) − f(0) for the target logits."""
    return zoo.target_logits(model, x, t) - zoo.target_logits(model, torch.zeros_like(x), t)


def test_ig_completeness_on_a_smooth_net(zoo, make, images, targets) -> None:
    # With an analytic integrand, 64-node Gauss-Legendre is exact up to float32 rounding of the sums.
    torch.manual_seed(0)
    model = zoo.scaled(zoo.smooth_cnn())
    gain = logit_gain(zoo, model, images, targets)
    torch.testing.assert_close(sums(make("ig", steps=64)(model, images, targets)), gain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_ig_completeness_on_a_relu_net(zoo, make, cnn, images, targets, rule) -> None:
    # Along the path the integrand of a ReLU net is piecewise constant, so any quadrature's error only
    # shrinks like 1/steps (each gradient jump costs about one node weight); in units of the logits'
    # size |f(x)| + |f(0)| we allow 2/steps: 3% at 64 steps (1.6% seen), 12.5% at 16.
    at_x = zoo.target_logits(cnn, images, targets)
    at_0 = zoo.target_logits(cnn, torch.zeros_like(images), targets)
    gain, size = at_x - at_0, at_x.abs() + at_0.abs()
    for steps in (64, 16):
        attributions = make("ig", steps=steps, method=rule)(cnn, images, targets)
        assert ((sums(attributions) - gain).abs() <= 2 / steps * size).all(), (steps, rule)


def test_ig_internal_batch_size_only_changes_memory(make, cnn, images, targets) -> None:
    small = make("ig", steps=8, internal_batch_size=5)(cnn, images, targets)
    torch.testing.assert_close(small, make("ig", steps=8)(cnn, images, targets), rtol=1e-5, atol=1e-7)


def test_deeplift_sums_to_delta(zoo, make, cnn, images, targets) -> None:
    gain = logit_gain(zoo, cnn, images, targets)
    torch.testing.assert_close(sums(make("deeplift")(cnn, images, targets)), gain, rtol=1e-5, atol=1e-6)


def pooled_net() -> nn.Module:
    """Bias-free, with the other layer types LRP propagates through (z-rule or pass-through)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2),
        nn.Identity(), nn.Flatten(), nn.Linear(16, 5, bias=False),
    )  # fmt: skip


@pytest.mark.parametrize("build", ["cnn", "pooled"])
def test_lrp_conserves_relevance_without_bias_and_epsilon(zoo, make, images, targets, build) -> None:
    torch.manual_seed(0)
    model = zoo.scaled(zoo.SmallCNN(bias=False) if build == "cnn" else pooled_net())
    logits = zoo.target_logits(model, images, targets)
    torch.testing.assert_close(sums(make("lrp_epsilon", epsilon=1e-9)(model, images, targets)), logits)
    absorbed = sums(make("lrp_epsilon")(model, images, targets))  # ε = 1 absorbs some relevance
    assert (absorbed.abs() < logits.abs()).all()


def test_gradcam_is_non_negative_and_matches_a_hand_computation(make, cnn, images, targets) -> None:
    cam = make("gradcam")(cnn, images, targets)
    assert (cam >= 0).all() and (cam > 0).any()
    layer = cnn.features[3]  # the last Conv2d
    x = images.clone().requires_grad_(True)
    kept = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    try:
        logits = cnn(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), kept["a"])
    weights = grads.mean((2, 3), keepdim=True)
    expected = F.relu((weights * kept["a"]).sum(1, keepdim=True)).detach()
    expected = F.interpolate(expected, size=images.shape[2:], mode="bilinear")
    torch.testing.assert_close(cam, expected)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gradient", lambda w, x: w.expand_as(x)),
        ("input_x_gradient", lambda w, x: w * x),
        ("ig", lambda w, x: w * x),
        ("deeplift", lambda w, x: w * x),
        ("smoothgrad", lambda w, x: w.expand_as(x)),  # the gradient of a linear model is constant
        ("smoothgrad_sq", lambda w, x: (w * w).expand_as(x)),
    ],
)
def test_linear_model_by_hand(zoo, make, images, targets, name, expected) -> None:
    torch.manual_seed(0)
    model = zoo.linear_model().eval()
    rows = model[1].weight[targets].detach().view(-1, 3, 16, 16)
    got = make(name)(model, images, targets)
    torch.testing.assert_close(got, expected(rows, images), rtol=1e-5, atol=1e-6)


def test_lrp_epsilon_on_a_linear_model_by_hand(zoo, make, images, targets) -> None:
    # One layer: R_i = x_i w_i · z / (z + ε·sign(z)), z the logit (bias included in z, not in the R_i).
    torch.manual_seed(0)
    model = zoo.linear_model().eval()
    rows = model[1].weight[targets].detach().view(-1, 3, 16, 16)
    z = zoo.target_logits(model, images, targets).view(-1, 1, 1, 1)
    for epsilon in (1e-9, 1.0):
        got = make("lrp_epsilon", epsilon=epsilon)(model, images, targets)
        torch.testing.assert_close(got, rows * images * z / (z + epsilon * z.sign()), rtol=1e-5, atol=1e-7)


def test_guided_backprop_and_deconvnet_by_hand(zoo, make, images, targets) -> None:
    # f = W2 relu(W1 x): GB sends relu(W2[t]) through the forward mask; Deconvnet ignores the mask.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), nn.ReLU(), nn.Linear(8, zoo.NUM_CLASSES))
    w1, w2 = model[1].weight.detach(), model[3].weight.detach()
    mask = (model[1](images.flatten(1)) > 0).float().detach()
    upstream = F.relu(w2[targets])
    for method, signal in (("guided_backprop", upstream * mask), ("deconvnet", upstream)):
        got = make(method)(model, images, targets)
        torch.testing.assert_close(got, (signal @ w1).view_as(images), rtol=1e-5, atol=1e-7)


def test_smoothgrad_without_noise_is_the_gradient(zoo, make, cnn, images, targets) -> None:
    gradient = make("gradient")(cnn, images, targets)
    noiseless = {"sigma": 0.0, "sigma_mode": "absolute"}
    torch.testing.assert_close(make("smoothgrad", **noiseless)(cnn, images, targets), gradient)
    torch.testing.assert_close(make("smoothgrad_sq", **noiseless)(cnn, images, targets), gradient**2)


@pytest.mark.parametrize("name", ["smoothgrad", "smoothgrad_sq"])
def test_smoothgrad_internal_batch_size_only_changes_memory(zoo, make, cnn, images, targets, name) -> None:
    reference = make(name, samples=5)(cnn, images, targets, generator=zoo.seeded())
    for chunk in (1, 2, 7):  # slices of the batch, and several noisy copies of it per pass
        got = make(name, samples=5, internal_batch_size=chunk)(cnn, images, targets, generator=zoo.seeded())
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-7)  # same noise; conv batching


def test_smoothgrad_noise_scale_modes(zoo, make, cnn, images) -> None:
    from attribench_core.model import ModelInfo, attach_info

    def scale(mode: str, model: nn.Module = cnn) -> torch.Tensor:
        return make("smoothgrad", sigma=0.1, sigma_mode=mode).noise_scale(model, images).flatten()

    torch.testing.assert_close(scale("range"), torch.full((3,), 0.1))  # default input range [0, 1]
    torch.testing.assert_close(scale("absolute"), torch.full((3,), 0.1))
    spread = images.flatten(1).amax(1) - images.flatten(1).amin(1)
    torch.testing.assert_close(scale("image"), 0.1 * spread)
    attach_info(cnn, ModelInfo(input_range=(-1.0, 1.0)))
    torch.testing.assert_close(scale("range"), torch.full((3,), 0.2))
    torch.testing.assert_close(scale("absolute"), torch.full((3,), 0.1))


def test_sobel_kernel_matches_opencv() -> None:
    from attribench_methods.baselines import sobel_x_kernel

    opencv_5 = torch.tensor([1.0, 4, 6, 4, 1])[:, None] * torch.tensor([-1.0, -2, 0, 2, 1])[None, :]
    assert torch.equal(sobel_x_kernel(5), opencv_5.double())
    assert torch.equal(sobel_x_kernel(3)[1], torch.tensor([-2.0, 0, 2]).double())
    assert torch.equal(sobel_x_kernel(7)[3], 20 * torch.tensor([-1.0, -4, -5, 0, 5, 4, 1]).double())


@pytest.mark.parametrize(("size", "slope_gain"), [(3, 8.0), (5, 128.0), (7, 2048.0)])
def test_edge_on_a_horizontal_ramp(zoo, make, size, slope_gain) -> None:
    # A ramp rising by 1 per column: Σ smoothing × Σ k·deriv_k per unit slope, away from the border.
    ramp = torch.arange(16.0).expand(2, 3, 16, 16)
    out = make("edge", kernel_size=size)(zoo.linear_model(), ramp, torch.zeros(2, dtype=torch.long))
    inner = out[..., size // 2 : -(size // 2), size // 2 : -(size // 2)]
    torch.testing.assert_close(inner, torch.full_like(inner, slope_gain))
    flat = make("edge")(zoo.linear_model(), torch.ones(1, 3, 16, 16), torch.zeros(1, dtype=torch.long))
    assert torch.equal(flat, torch.zeros_like(flat))


def test_edge_ignores_the_model_and_the_channels_order(zoo, make, cnn, images, targets) -> None:
    out = make("edge")(cnn, images, targets)
    torch.testing.assert_close(out, make("edge")(zoo.linear_model(), images.flip(1), targets))
    assert (out < 0).any() and (out > 0).any()  # signed: no absolute value is taken


def test_random_is_uniform_in_unit_interval(zoo, make, cnn, targets) -> None:
    out = make("random")(cnn, torch.zeros(3, 3, 32, 32), targets, generator=zoo.seeded())
    assert out.min() >= 0 and out.max() < 1 and abs(out.mean().item() - 0.5) < 0.05
