"""Extremal Perturbation and IBA: the two methods that optimise a mask per image. Tiny models on 3×16×16
images; toy models where the relevant region is known; the model left as found; parameter checks."""

from __future__ import annotations

import math

import pytest
import torch
from attribench_methods.extremal import (
    BlurPyramid,
    ExtremalPerturbation,
    SmoothMaskGenerator,
    area_penalty,
    gaussian_blur,
)
from attribench_methods.iba import IBA
from attribench_methods.model_checks import UnsupportedModelError
from torch import nn

from attribench_core.errors import ParameterError

H = 16


def references(n: int) -> torch.Tensor:
    return torch.rand((n, 3, H, H), generator=torch.Generator().manual_seed(7))


def region_mask(rows: slice, cols: slice) -> torch.Tensor:
    inside = torch.zeros(H, H, dtype=torch.bool)
    inside[rows, cols] = True
    return inside


# ---------------------------------------------------------------- Extremal Perturbation


def stripes_model(rows: slice, cols: slice) -> nn.Module:
    """A linear model whose class-0 weights are ±10 horizontal stripes inside one rectangle, zero elsewhere.
    Stripes and rectangle are symmetric under a horizontal flip, so TorchRay's flip jitter keeps the logit."""
    weight = torch.zeros(3, H, H)
    stripes = (torch.arange(H) % 2).float()[:, None].expand(H, H) * 2 - 1
    weight[:, rows, cols] = 10 * stripes[rows, cols]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * H, 2, bias=False))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = weight.flatten()
    return model.eval()


def test_extremal_mask_in_unit_range_with_the_requested_area(zoo, cnn, images, targets) -> None:
    """The constraint holds the sorted mask near a step of height 1 at `area`: the part above ½ has that
    area to a pixel; a smooth mask this small (σ 1.5 px) keeps soft edges, so the mean is a little more."""
    image_only = ExtremalPerturbation(area_with_margin=False)(cnn, images, targets)
    assert tuple(image_only.shape) == (3, 1, H, H) and image_only.dtype == torch.float32
    assert image_only.min() >= 0 and image_only.max() <= 1
    kept = (image_only > 0.5).float().mean((1, 2, 3))
    torch.testing.assert_close(kept, torch.full((3,), 0.3), atol=1.5 / H**2, rtol=0)
    assert ((image_only.mean((1, 2, 3)) - 0.3).abs() < 0.06).all()
    # TorchRay's constraint counts the mask's margin (18×18 here), which ends up outside the kept area
    with_margin = ExtremalPerturbation()(cnn, images, targets)
    generator = SmoothMaskGenerator((H, H), 1, 21 * H / 224, torch.device("cpu"))
    area = 0.3 * math.prod(generator.shape_out) / H**2
    kept = (with_margin > 0.5).float().mean((1, 2, 3))
    torch.testing.assert_close(kept, torch.full((3,), area), atol=1.5 / H**2, rtol=0)
    assert ((with_margin.mean((1, 2, 3)) - area).abs() < 0.05).all()


def test_extremal_mask_finds_the_region_the_logit_reads() -> None:
    rows, cols = slice(3, 11), slice(3, 13)  # 80 of 256 pixels, 31%
    inside = region_mask(rows, cols)
    stripes = (torch.arange(H) % 2).float()[:, None].expand(H, H)
    images = torch.stack([stripes.expand(3, H, H), 0.25 + 0.5 * stripes.expand(3, H, H)])
    masks = ExtremalPerturbation(area_with_margin=False)(
        stripes_model(rows, cols), images, torch.tensor([0, 0])
    )
    mass_inside = masks[:, 0, inside].sum(1) / masks.sum((1, 2, 3))
    assert (mass_inside > 0.7).all(), mass_inside  # 0.31 for a uniform mask
    assert (masks[:, 0, inside].mean(1) > 0.85).all()
    assert (masks[:, 0, ~inside].mean(1) < 0.2).all()


def test_extremal_optimises_the_images_of_a_batch_independently(zoo, cnn, images, targets) -> None:
    explainer = ExtremalPerturbation(steps=60)
    together = explainer(cnn, images, targets)
    alone = torch.cat([explainer(cnn, images[i : i + 1], targets[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=5e-4, rtol=0)  # batched convolutions differ in ulps
    in_pairs = ExtremalPerturbation(steps=60, internal_batch_size=2)(cnn, images, targets)
    torch.testing.assert_close(together, in_pairs, atol=5e-4, rtol=0)
    assert torch.equal(together, explainer(cnn, images, targets, generator=zoo.seeded(1)))  # no randomness


def test_extremal_leaves_the_model_as_found(zoo, cnn, images, targets) -> None:
    cnn.features[0].weight.requires_grad_(False)
    before = zoo.snapshot(cnn)
    ExtremalPerturbation(steps=5)(cnn, images, targets)
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    assert all(p.grad is None for p in cnn.parameters())
    cnn.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        ExtremalPerturbation(steps=5)(cnn, images, targets)
    cnn.fail = False
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))


def test_area_penalty_is_the_sorted_square_error_away_from_ties() -> None:
    values = torch.tensor([[0.9, 0.1, 0.5, 0.7]], requires_grad=True)
    reference = torch.tensor([0.0, 0.0, 1.0, 1.0])
    area_penalty(values, reference).sum().backward()
    # sorted 0.1, 0.5, 0.7, 0.9 against 0, 0, 1, 1: (0.01 + 0.25 + 0.09 + 0.01) / 4
    assert area_penalty(values, reference).item() == pytest.approx(0.09)
    # d/dv = 2 (v − r_rank(v)) / 4, in the input's order 0.9→1, 0.1→0, 0.5→0, 0.7→1
    torch.testing.assert_close(values.grad, torch.tensor([[-0.05, 0.05, 0.25, -0.15]]))


def test_area_penalty_gives_tied_values_the_same_pull_whatever_the_sort_order() -> None:
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.2]], requires_grad=True)
    reference = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    area_penalty(values, reference).sum().backward()
    # 0.2 takes rank 0 (target 0); the four tied ones share the mean of 0, 0, 1, 1 = 0.5
    torch.testing.assert_close(values.grad, torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.08]]))
    permuted = values.detach()[:, [4, 2, 0, 3, 1]].requires_grad_(True)
    area_penalty(permuted, reference).sum().backward()
    torch.testing.assert_close(permuted.grad, values.grad[:, [4, 2, 0, 3, 1]])


def test_extremal_masks_do_not_depend_on_the_sort_order_of_ties(
    make, cnn, images, targets, monkeypatch
) -> None:
    """CUDA and CPU order tied values differently; TorchRay's penalty let that order decide the mask."""
    expected = make("extremal_perturbation", steps=40)(cnn, images, targets)
    sort = torch.Tensor.sort
    monkeypatch.setattr(torch.Tensor, "sort", lambda self, dim=-1, **kw: sort(self.flip(dim), dim=dim, **kw))
    got = make("extremal_perturbation", steps=40)(cnn, images, targets)
    torch.testing.assert_close(got, expected)


def test_blur_pyramid_with_two_levels_is_the_plain_blend() -> None:
    images = torch.rand((2, 3, H, H), generator=torch.Generator().manual_seed(3))
    mask = torch.rand((2, 1, H, H), generator=torch.Generator().manual_seed(4))
    blended = BlurPyramid(images, 2, 2.0).apply(mask)
    torch.testing.assert_close(blended, images * mask + gaussian_blur(images, 2.0) * (1 - mask))
    flat = torch.full((1, 3, H, H), 0.4)
    torch.testing.assert_close(gaussian_blur(flat, 5.0), flat)  # replicated edges: no darkening
    pyramid = BlurPyramid(images, 8, 2.0)
    torch.testing.assert_close(pyramid.apply(torch.ones_like(mask)), images)
    torch.testing.assert_close(pyramid.apply(torch.zeros_like(mask)), gaussian_blur(images, 2.0))


def test_extremal_refuses_a_mask_sigma_too_small_for_its_step(cnn, images, targets) -> None:
    with pytest.raises(ValueError, match="too small"):
        ExtremalPerturbation(mask_step=7, mask_sigma=1.0)(cnn, images, targets)


# ---------------------------------------------------------------- IBA


class RegionModel(nn.Module):
    """conv (local mean) → ReLU → a linear head that reads only the features in one region; class 0 wins
    when that region is brighter than average. The conv output (the CAM layer) is 16×16, as the input."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * H * H, 3)
        region = torch.zeros(4, H, H)
        region[:, rows, cols] = 1
        with torch.no_grad():
            self.conv.weight.fill_(1 / 27)
            self.conv.bias.zero_()
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0] = region.flatten()
            self.fc.bias[0] = -0.625 * region.sum()  # between the references' and the bright region's sums

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


def test_iba_map_shape_finite_non_negative_deterministic(zoo, cnn, images, targets) -> None:
    explainer = IBA()
    out = explainer(cnn, images, targets, generator=zoo.seeded(0), references=references)
    assert tuple(out.shape) == (3, 1, H, H) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all() and out.sum() > 0
    assert torch.equal(out, explainer(cnn, images, targets, generator=None, references=references))
    assert not torch.equal(
        out, explainer(cnn, images, targets, generator=zoo.seeded(1), references=references)
    )
    one_per_pass = IBA(internal_batch_size=10)(
        cnn, images, targets, generator=zoo.seeded(0), references=references
    )
    torch.testing.assert_close(one_per_pass, out, rtol=1e-4, atol=1e-6)


def test_iba_capacity_concentrates_where_the_head_reads() -> None:
    rows, cols = slice(2, 8), slice(2, 8)  # 36 of 256 pixels
    inside = region_mask(rows, cols)
    images = torch.rand((2, 3, H, H), generator=torch.Generator().manual_seed(6))
    images[:, :, rows, cols] = 0.5 + 0.5 * images[:, :, rows, cols]
    model = RegionModel(rows, cols).eval()
    maps = IBA()(model, images, torch.tensor([0, 0]), references=references)[:, 0]
    share = maps[:, inside].sum(1) / maps.sum((1, 2))
    assert (share > 0.8).all(), share  # 0.14 for a uniform map
    assert (maps[:, inside].mean(1) > 20 * maps[:, ~inside].mean(1)).all()


def test_iba_capacity_by_hand_when_alpha_stays_put(cnn, images, targets) -> None:
    """With a vanishing learning rate α stays 5: the map is Σ_c KL(N(λr', (1−λ)²) ‖ N(0,1)) / ln 2 with
    λ = sigmoid(5) and r' the conv output standardised by the references' mean and std."""
    layer = cnn.features[0]  # full-resolution output: no rescaling or upsampling
    with torch.no_grad():
        feats = layer(references(32))
        normed = (layer(images) - feats.mean(0)) / feats.std(0).clamp(min=0.01)
    lam = torch.sigmoid(torch.tensor(5.0))
    kl = 0.5 * ((lam * normed) ** 2 + (1 - lam) ** 2 - 1 - 2 * torch.log(1 - lam))
    expected = kl.sum(1, keepdim=True) / math.log(2)
    got = IBA(layer="features.0", learning_rate=1e-12, steps=1)(cnn, images, targets, references=references)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_iba_leaves_the_model_as_found_also_after_errors(zoo, cnn, images, targets) -> None:
    cnn.classifier.train()
    before = zoo.snapshot(cnn)
    IBA(steps=2)(cnn, images, targets, references=references)
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    assert all(p.grad is None for p in cnn.parameters())
    cnn.fail = True  # raises inside the optimisation, after the bottleneck hook has fired
    with pytest.raises(RuntimeError, match="boom"):
        IBA(steps=2)(cnn, images, targets, references=references)
    cnn.fail = False
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    reused = zoo.ReusedReLUCNN(cnn).eval()
    before = zoo.snapshot(reused)
    with pytest.raises(UnsupportedModelError, match="more than once"):
        IBA(layer="relu", steps=2)(reused, images, targets, references=references)
    zoo.assert_same_snapshot(before, zoo.snapshot(reused))


def test_iba_same_map_with_inplace_relus(zoo, cnn, images, targets) -> None:
    inplace = zoo.SmallCNN(inplace=True).eval()
    inplace.load_state_dict(cnn.state_dict())
    expected = IBA(steps=3)(cnn, images, targets, references=references)
    got = IBA(steps=3)(inplace, images, targets, references=references)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"layer": "nope"}, "no module 'nope'"), ({"layer": "classifier.1"}, "feature map")],
)  # fmt: skip
def test_iba_rejects_layers_the_model_lacks_or_without_a_map(cnn, images, targets, params, match) -> None:
    with pytest.raises(ValueError, match=match):
        IBA(**params)(cnn, images, targets, references=references)


@pytest.mark.parametrize(
    ("make", "params", "match"),
    [(IBA, {"steps": 0}, "'steps' must be at least 1"), (IBA, {"beta": -1.0}, "'beta' must be at least 0"),
     (IBA, {"estimation_images": 1}, "'estimation_images' must be at least 2"),
     (IBA, {"samples": 0}, "'samples' must be at least 1"),
     (IBA, {"learning_rate": 0.0}, "'learning_rate' must be greater than 0"),
     (IBA, {"min_std": -0.1}, "'min_std' must be greater than 0"),
     (ExtremalPerturbation, {"learning_rate": -0.01}, "'learning_rate' must be greater than 0"),
     (ExtremalPerturbation, {"area": 1.0}, "'area' must be greater than 0 and less than 1; got 1.0"),
     (ExtremalPerturbation, {"levels": 1}, "'levels' must be at least 2"),
     (ExtremalPerturbation, {"mask_sigma": -1.0}, "'mask_sigma' must be at least 0"),
     (ExtremalPerturbation, {"steps": 0}, "'steps' must be at least 1"),
     (ExtremalPerturbation, {"area": 0.0}, "'area' must be greater than 0"),
     (ExtremalPerturbation, {"blur_sigma": -1.0}, "'blur_sigma' must be at least 0"),
     (ExtremalPerturbation, {"internal_batch_size": 0}, "'internal_batch_size' must be at least 1")],
)  # fmt: skip
def test_optimised_maps_refuse_parameters_out_of_range_when_made(make, params, match) -> None:
    with pytest.raises(ParameterError, match=match):
        make(**params)


def test_iba_needs_references(cnn, images, targets) -> None:
    with pytest.raises(ValueError, match="references"):
        IBA()(cnn, images, targets)
