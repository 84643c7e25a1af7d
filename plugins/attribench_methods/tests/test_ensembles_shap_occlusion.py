"""VarGrad, the IG ensembles, DeepSHAP, GradientSHAP, Occlusion and Guided Grad-CAM: the contract (shape,
determinism, model left as found) and their axioms or hand-checkable cases. Classes are used directly, so
these tests do not depend on what `plugin.py` registers."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from attribench_methods.backprop_rules import GuidedBackprop
from attribench_methods.cam import GradCAM, GuidedGradCAM
from attribench_methods.common import target_gradient
from attribench_methods.ensembles import IGSmoothGrad, IGSmoothGradSquared, IGVarGrad, VarGrad, noise_ensemble
from attribench_methods.gradients import IntegratedGradients, SmoothGrad, SmoothGradSquared
from attribench_methods.perturbation import Occlusion
from attribench_methods.propagation import DeepLift
from attribench_methods.shap import DeepShap, GradientShap
from torch import nn

from attribench_core.errors import ParameterError
from attribench_core.explainer import Explainer
from attribench_core.testing import check_explainer

FAST = {"samples": 3, "steps": 8}  # IG ensembles with few copies and steps
BUILD = {
    "vargrad": lambda **p: VarGrad(**{"samples": 4, **p}),
    "ig_sg": lambda **p: IGSmoothGrad(**{**FAST, **p}),
    "ig_sq": lambda **p: IGSmoothGradSquared(**{**FAST, **p}),
    "ig_var": lambda **p: IGVarGrad(**{**FAST, **p}),
    "deepshap": lambda **p: DeepShap(**{"background_size": 4, **p}),
    "gradient_shap": lambda **p: GradientShap(**{"samples": 6, "background_size": 4, **p}),
    "occlusion": lambda **p: Occlusion(**p),
    "guided_gradcam": lambda **p: GuidedGradCAM(**p),
}
STOCHASTIC = {"vargrad", "ig_sg", "ig_sq", "ig_var", "gradient_shap"}
NEEDS_REFERENCES = {"deepshap", "gradient_shap"}


def training_images(n: int) -> torch.Tensor:
    """What a run's `references` gives: n training images on the CPU, the same for the same n."""
    return torch.rand((n, 3, 16, 16), generator=torch.Generator().manual_seed(5))


def run(
    explainer: Explainer, model: nn.Module, x: torch.Tensor, t: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    return explainer(model, x, t, generator=torch.Generator().manual_seed(seed), references=training_images)


def sums(attributions: torch.Tensor) -> torch.Tensor:
    return attributions.flatten(1).sum(1)


def weight_rows(model: nn.Module, targets: torch.Tensor) -> torch.Tensor:
    return model[1].weight[targets].detach().view(-1, 3, 16, 16)


@pytest.fixture
def linear(zoo) -> nn.Module:
    torch.manual_seed(0)
    return zoo.linear_model().eval()


@pytest.mark.parametrize("name", sorted(BUILD))
def test_core_contract(name) -> None:
    params = {"background": "zeros"} if name in NEEDS_REFERENCES else {}
    check_explainer(BUILD[name](**params))  # shape, dtype, finite, seeded determinism, model untouched


@pytest.mark.parametrize("name", sorted(BUILD))
def test_contract_with_references(zoo, name, cnn, images, targets) -> None:
    cnn.features[0].weight.requires_grad_(False)  # a mix of frozen and trainable, of train and eval
    cnn.classifier.train()
    before = zoo.snapshot(cnn)
    explainer = BUILD[name]()
    explainer.generator, explainer._references = zoo.seeded(), training_images
    first = explainer.explain(cnn, images, targets)  # explain itself leaves nothing behind
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    out = run(explainer, cnn, images, targets)
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    assert out.shape == images.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().sum() > 0 and torch.equal(out, first)
    assert torch.equal(out, explainer(cnn, images, targets, references=training_images))  # default seed 0
    assert torch.equal(out, run(explainer, cnn, images, targets, seed=1)) != (name in STOCHASTIC)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_model_left_as_found_after_an_error(zoo, name, cnn, images, targets) -> None:
    cnn.fail = True  # raises at the end of forward, after every hook has fired
    before = zoo.snapshot(cnn)
    with pytest.raises(RuntimeError, match="boom"):
        explainer = BUILD[name]()
        explainer._references = training_images
        explainer.explain(cnn, images, targets)
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    cnn.fail = False
    before = zoo.snapshot(cnn)
    with pytest.raises((ValueError, RuntimeError, IndexError)):  # no num_classes declared: found in forward
        run(BUILD[name](), cnn, images, torch.tensor([0, 99, 1]))
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))


@pytest.mark.parametrize("name", sorted(BUILD))
def test_inplace_and_reused_relus_give_the_same_map(zoo, name, cnn, images, targets) -> None:
    inplace = zoo.SmallCNN(inplace=True).eval()
    inplace.load_state_dict(cnn.state_dict())
    expected = run(BUILD[name](), cnn, images, targets)
    for other in (inplace, zoo.ReusedReLUCNN(cnn).eval()):
        before = zoo.snapshot(other)
        torch.testing.assert_close(run(BUILD[name](), other, images, targets), expected, rtol=1e-5, atol=1e-7)
        zoo.assert_same_snapshot(before, zoo.snapshot(other))


@pytest.mark.parametrize("name", ["deepshap", "guided_gradcam"])
def test_relu_shared_by_parallel_branches_gives_the_same_map(zoo, name, images, targets) -> None:
    torch.manual_seed(0)
    separate = zoo.TwoBranches(shared=False).eval()
    shared = zoo.TwoBranches(shared=True).eval()
    shared.load_state_dict(separate.state_dict(), strict=False)
    expected = run(BUILD[name](), separate, images, targets)
    torch.testing.assert_close(run(BUILD[name](), shared, images, targets), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(BUILD))
def test_cuda_inputs_give_cuda_maps_close_to_cpu(name, cnn, images, targets) -> None:
    expected = run(BUILD[name](), cnn, images, targets)
    got = run(BUILD[name](), copy.deepcopy(cnn).cuda(), images.cuda(), targets.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("vargrad", {"samples": 0}, "'samples' must be at least 1"),
        ("vargrad", {"sigma": -0.1}, "'sigma' must be at least 0"),
        ("ig_sg", {"steps": 0}, "'steps' must be at least 1"),
        ("ig_var", {"internal_batch_size": 0}, "'internal_batch_size' must be at least 1"),
        ("deepshap", {"background_size": 0}, "'background_size' must be at least 1"),
        ("deepshap", {"internal_batch_size": 0}, "'internal_batch_size' must be at least 1"),
        ("gradient_shap", {"stdevs": -1.0}, "'stdevs' must be at least 0"),
        ("gradient_shap", {"samples": 0}, "'samples' must be at least 1"),
        ("occlusion", {"window": 0}, "'window' must be at least 1"),
        ("occlusion", {"window": 2, "stride": 3}, "'stride' \\(3\\) must not exceed 'window' \\(2\\)"),
    ],
)
def test_parameters_out_of_range_are_refused_when_made(name, params, message) -> None:
    with pytest.raises(ParameterError, match=message):
        BUILD[name](**params)


def test_a_window_larger_than_the_images_is_a_value_error(cnn, images, targets) -> None:
    with pytest.raises(ValueError, match="Parameter 'window' \\(17\\) exceeds the image size"):
        run(BUILD["occlusion"](window=17), cnn, images, targets)


@pytest.mark.parametrize("name", ["deepshap", "gradient_shap"])
def test_background_needs_matching_references(name, cnn, images, targets) -> None:
    with pytest.raises(ValueError, match="reference images"):
        BUILD[name]()(cnn, images, targets)  # background=train, and the caller gave no references
    with pytest.raises(ValueError, match="do not match"):
        BUILD[name]()(cnn, images, targets, references=lambda n: torch.zeros(n, 3, 8, 8))


# --- VarGrad and the IG ensembles -------------------------------------------------------------------------


def test_vargrad_is_the_variance_smoothgrad_sees(zoo, cnn, images, targets) -> None:
    # Same noise as SmoothGrad (same generator, same order): Var = E[g²] − E[g]².
    var = run(VarGrad(samples=5), cnn, images, targets)
    mean = run(SmoothGrad(samples=5), cnn, images, targets)
    square = run(SmoothGradSquared(samples=5), cnn, images, targets)
    assert (var >= 0).all() and (var > 0).any()
    torch.testing.assert_close(var, square - mean**2, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("cls", [SmoothGrad, SmoothGradSquared])
def test_the_shared_noise_loop_reproduces_smoothgrad(cls, cnn, images, targets) -> None:
    # `noise_ensemble` walks the copies like SmoothGrad does and draws the same noise, so SmoothGrad's own
    # loop could be replaced by it.
    explainer = cls(samples=5, internal_batch_size=4)
    explainer.generator = torch.Generator().manual_seed(0)
    reduction = "square" if cls.squared else "mean"

    def gradient(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return target_gradient(cnn, x, t)

    got = noise_ensemble(explainer, cnn, images, targets, gradient, reduction)
    torch.testing.assert_close(got, run(cls(samples=5), cnn, images, targets), rtol=1e-5, atol=1e-8)


def test_vargrad_without_noise_is_zero(cnn, images, targets) -> None:
    out = run(VarGrad(samples=5, sigma=0.0), cnn, images, targets)
    assert out.abs().max() <= 1e-12


@pytest.mark.parametrize("cls", [VarGrad, IGSmoothGrad, IGVarGrad])
def test_ensembles_internal_batch_size_only_changes_memory(cls, cnn, images, targets) -> None:
    params = {"samples": 4, "steps": 4} if cls is not VarGrad else {"samples": 4}
    reference = run(cls(**params), cnn, images, targets)
    for chunk in (1, 2, 7):  # parts of one copy of the batch, and several copies per pass
        got = run(cls(**params, internal_batch_size=chunk), cnn, images, targets)
        torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-7)


def test_ig_ensembles_without_noise(cnn, images, targets) -> None:
    ig = run(IntegratedGradients(steps=8), cnn, images, targets)
    noiseless = {"samples": 2, "steps": 8, "sigma": 0.0}
    torch.testing.assert_close(run(IGSmoothGrad(**noiseless), cnn, images, targets), ig)
    torch.testing.assert_close(run(IGSmoothGradSquared(**noiseless), cnn, images, targets), ig**2)
    assert run(IGVarGrad(**noiseless), cnn, images, targets).abs().max() <= 1e-12


def test_ig_ensembles_moments_agree(cnn, images, targets) -> None:
    mean = run(IGSmoothGrad(**FAST), cnn, images, targets)
    square = run(IGSmoothGradSquared(**FAST), cnn, images, targets)
    var = run(IGVarGrad(**FAST), cnn, images, targets)
    assert (square >= 0).all() and (var >= 0).all()
    torch.testing.assert_close(var, square - mean**2, rtol=1e-3, atol=1e-8)


def test_ig_sg_completeness(zoo, images, targets) -> None:
    # Each IG map sums to f(x + ε) − f(0), so their mean sums to the mean of those gains. The noise is
    # redrawn here as documented: N(0, 0.3²) per image, in (sample, image) order, from the seed.
    torch.manual_seed(0)
    model = zoo.scaled(zoo.smooth_cnn())
    samples = 3
    out = run(IGSmoothGrad(samples=samples, steps=32), model, images, targets)
    generator = zoo.seeded(0)
    noisy = torch.stack(
        [
            images[b] + 0.3 * torch.randn(images.shape[1:], generator=generator)
            for _ in range(samples)
            for b in range(3)
        ]
    )
    gains = zoo.target_logits(model, noisy, targets.repeat(samples)).view(samples, 3).mean(0)
    gains = gains - zoo.target_logits(model, torch.zeros_like(images), targets)
    torch.testing.assert_close(sums(out), gains, rtol=1e-4, atol=1e-5)


def test_ig_ensemble_defaults_are_socos() -> None:
    params = IGSmoothGrad().params
    assert params["samples"] == 20 and params["sigma"] == 0.3 and params["sigma_mode"] == "absolute"
    assert params["steps"] == 50
    assert SmoothGrad.parameters[0].default == 25  # the shared Params were copied, not changed


# --- DeepSHAP and GradientSHAP ---------------------------------------------------------------------------


def test_deepshap_sums_to_the_gain_over_the_mean_background(zoo, images, targets) -> None:
    torch.manual_seed(0)
    model = zoo.scaled(zoo.smooth_cnn())  # no max-pooling: DeepLIFT's Rescale rule conserves exactly
    out = run(DeepShap(background_size=5), model, images, targets)
    expected = zoo.target_logits(model, images, targets) - torch.stack(
        [zoo.target_logits(model, training_images(5), t.repeat(5)).mean() for t in targets]
    )
    torch.testing.assert_close(sums(out), expected, rtol=1e-4, atol=1e-5)


def test_deepshap_sums_exactly_through_relu_then_maxpool(zoo, cnn, images, targets) -> None:
    # cnn has ReLU → MaxPool2d; on Captum's plain hooks the gaps reach the size of the gains (see
    # `deeplift_model`), so these tolerances also check the fix.
    refs = training_images(4)
    at_b = torch.stack([zoo.target_logits(cnn, refs, t.repeat(4)).mean() for t in targets])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no summation warning either
        out = run(DeepShap(background_size=4), cnn, images, targets)
        zeros = run(DeepShap(background="zeros"), cnn, images, targets)
    at_x = zoo.target_logits(cnn, images, targets)
    torch.testing.assert_close(sums(out), at_x - at_b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sums(zeros), at_x - zoo.target_logits(cnn, torch.zeros_like(images), targets))


def test_deepshap_by_hand_through_relu_then_maxpool(images, targets) -> None:
    # One reference b: DeepLIFT-Rescale by hand. Max-pooling routes the output change in two parts, to the
    # argmax of x (max(p, p_b) − p_b) and of b (p − max(p, p_b)); each layer divides by its input change.
    torch.manual_seed(0)
    conv, linear = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 5)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), linear).eval()
    b = training_images(1)
    got = DeepShap(background_size=1)(model, images, targets, references=training_images)
    with torch.no_grad():
        z, zb = conv(images), conv(b)
        a, ab = z.relu(), zb.relu()
        (p, at), (pb, atb) = F.max_pool2d(a, 2, return_indices=True), F.max_pool2d(ab, 2, return_indices=True)
        top, out = torch.max(p, pb), linear.weight[targets].view(-1, 4, 8, 8)
        routed = F.max_unpool2d(out * (top - pb), at, 2, output_size=(16, 16)) + F.max_unpool2d(
            out * (p - top), atb.expand_as(at), 2, output_size=(16, 16)
        )
        # contributions m·Δ per unit: Δa ≠ 0 wherever something is routed; ReLU: m_z = routed / Δz
        m_z = torch.where((z - zb).abs() > 1e-12, routed / (z - zb), torch.zeros_like(z))
        expected = torch.nn.grad.conv2d_input(images.shape, conv.weight, m_z, padding=1) * (images - b)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_deepshap_zeros_is_deeplift_and_batching_only_changes_memory(zoo, cnn, images, targets) -> None:
    torch.manual_seed(0)
    smooth = zoo.scaled(zoo.smooth_cnn())  # no adjacent hooked modules: Captum's DeepLift is exact here
    torch.testing.assert_close(
        run(DeepShap(background="zeros"), smooth, images, targets), run(DeepLift(), smooth, images, targets)
    )
    out = run(DeepShap(background_size=4), cnn, images, targets)
    for chunk in (1, 2, 5, 64):
        got = run(DeepShap(background_size=4, internal_batch_size=chunk), cnn, images, targets)
        torch.testing.assert_close(got, out, rtol=1e-5, atol=1e-7)


def test_deepshap_on_a_linear_model_by_hand(linear, images, targets) -> None:
    out = run(DeepShap(background_size=6), linear, images, targets)
    expected = weight_rows(linear, targets) * (images - training_images(6).mean(0))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_gradient_shap_on_a_linear_model_by_hand(linear, images, targets) -> None:
    # The gradient is w everywhere, so every draw gives w·(x − b) whatever α: exact for one background
    # image repeated, and w·(x − mean b) in expectation for several.
    rows = weight_rows(linear, targets)
    same = lambda n: training_images(1).expand(n, -1, -1, -1)  # noqa: E731
    out = GradientShap(samples=5)(linear, images, targets, generator=torch.Generator(), references=same)
    torch.testing.assert_close(out, rows * (images - training_images(1)), rtol=1e-5, atol=1e-6)
    zeros = run(GradientShap(samples=5, background="zeros"), linear, images, targets)
    torch.testing.assert_close(zeros, rows * images, rtol=1e-5, atol=1e-6)
    many = run(
        GradientShap(samples=2000, background_size=2, internal_batch_size=3000), linear, images, targets
    )
    spread = (rows * (training_images(2)[0] - training_images(2)[1])).abs()
    assert ((many - rows * (images - training_images(2).mean(0))).abs() <= 0.05 * spread + 1e-7).all()


def test_gradient_shap_noise_and_batching(cnn, images, targets) -> None:
    plain = run(GradientShap(samples=4), cnn, images, targets)
    for chunk in (1, 5):
        got = run(GradientShap(samples=4, internal_batch_size=chunk), cnn, images, targets)
        torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-7)
    noisy = run(GradientShap(samples=4, stdevs=0.1), cnn, images, targets)
    assert not torch.equal(noisy, plain)
    torch.testing.assert_close(
        noisy, run(GradientShap(samples=4, stdevs=0.1, internal_batch_size=2), cnn, images, targets)
    )


def test_gradient_shap_completeness_in_expectation(zoo, images, targets) -> None:
    # E[Σ attributions] = f(x) − E_b f(b) (IG with a random node); loose with 400 draws on a smooth net.
    torch.manual_seed(0)
    model = zoo.scaled(zoo.smooth_cnn())
    out = run(GradientShap(samples=400, background_size=2, internal_batch_size=1200), model, images, targets)
    refs = training_images(2)
    at_x = zoo.target_logits(model, images, targets)
    at_b = torch.stack([zoo.target_logits(model, refs, t.repeat(2)).mean() for t in targets])
    assert ((sums(out) - (at_x - at_b)).abs() <= 0.1 * (at_x.abs() + at_b.abs())).all()


# --- Occlusion ----------------------------------------------------------------------------------------------


def test_occlusion_one_pixel_window_on_a_linear_model(linear, images, targets) -> None:
    # Occluding pixel (h, w) on all channels drops the logit by Σ_c w_c,h,w (x_c,h,w − baseline).
    rows = weight_rows(linear, targets)
    for baseline in (0.0, 0.5):
        out = run(Occlusion(window=1, stride=1, baseline=baseline), linear, images, targets)
        expected = (rows * (images - baseline)).sum(1, keepdim=True).expand_as(images)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_averages_over_covering_windows(linear, images, targets) -> None:
    # Window 2, stride 2: disjoint patches, each pixel gets its patch's total drop.
    rows = weight_rows(linear, targets)
    per_pixel = (rows * images).sum(1, keepdim=True)
    patch = nn.functional.avg_pool2d(per_pixel, 2) * 4
    expected = nn.functional.interpolate(patch, scale_factor=2, mode="nearest").expand_as(images)
    out = run(Occlusion(window=2, stride=2), linear, images, targets)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_internal_batch_size_and_uneven_sizes(cnn, linear, images, targets) -> None:
    out = run(Occlusion(), cnn, images, targets)
    torch.testing.assert_close(run(Occlusion(internal_batch_size=1), cnn, images, targets), out)
    # 18 pixels, window 8, stride 4: Captum clips the last window, so every pixel has a value.
    wide = torch.rand((2, 3, 18, 18), generator=torch.Generator().manual_seed(3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 18 * 18, 5))
    got = run(Occlusion(), model, wide, targets[:2])
    assert torch.isfinite(got).all() and (got[..., -1, -1] != 0).all()


# --- Guided Grad-CAM --------------------------------------------------------------------------------------


def test_guided_gradcam_is_guided_backprop_times_gradcam(cnn, images, targets) -> None:
    cam = run(GradCAM(), cnn, images, targets)
    guided = run(GuidedBackprop(), cnn, images, targets)
    out = run(GuidedGradCAM(), cnn, images, targets)
    assert out.shape == images.shape
    torch.testing.assert_close(out, guided * cam)
    assert ((out == 0) | (out.sign() == guided.sign())).all()  # the CAM factor is ≥ 0
