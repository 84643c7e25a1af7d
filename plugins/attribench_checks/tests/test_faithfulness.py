import math

import numpy as np
import pytest
import torch
from attribench_checks import faithfulness


def rng():
    return np.random.default_rng(7)


def test_gaussian_noise_has_std_sigma_and_is_the_same_drawn_at_once_or_in_pieces():
    once = faithfulness.gaussian_noise(rng(), 6, (3, 4, 4), 0.5)
    generator = rng()
    pieces = [faithfulness.gaussian_noise(generator, n, (3, 4, 4), 0.5) for n in (2, 3, 1)]
    assert once.shape == (6, 3, 4, 4) and once.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(pieces), once)
    assert faithfulness.gaussian_noise(rng(), 1000, (100,), 0.5).std() == pytest.approx(0.5, rel=0.01)


def test_square_masks_are_one_whole_square_reaching_every_position():
    masks = faithfulness.square_masks(rng(), 400, 5, 6, 2)
    assert (masks.sum(axis=(1, 2)) == 4).all()
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    assert (rows.sum(axis=1) == 2).all() and (cols.sum(axis=1) == 2).all()
    tops, lefts = rows.argmax(axis=1), cols.argmax(axis=1)
    assert set(tops) == set(range(4)) and set(lefts) == set(range(5))
    generator = rng()
    pieces = [faithfulness.square_masks(generator, n, 5, 6, 2) for n in (150, 250)]
    np.testing.assert_array_equal(np.concatenate(pieces), masks)


def test_subset_masks_hold_size_distinct_pixels_each_equally_likely():
    masks = faithfulness.subset_masks(rng(), 4000, 3, 4, 5)
    assert masks.shape == (4000, 3, 4) and (masks.sum(axis=(1, 2)) == 5).all()
    np.testing.assert_allclose(masks.mean(axis=0), 5 / 12, atol=0.03)
    generator = rng()
    pieces = [faithfulness.subset_masks(generator, n, 3, 4, 5) for n in (1000, 3000)]
    np.testing.assert_array_equal(np.concatenate(pieces), masks)


def test_baselines_are_zero_the_channel_means_or_the_image_min():
    images = torch.tensor([[[[1.0, 3.0]], [[-2.0, 6.0]]]])  # [1, 2 channels, 1, 2]
    assert faithfulness.baseline_values(images, "zero").flatten().tolist() == [0.0]
    assert faithfulness.baseline_values(images, "mean").flatten().tolist() == [2.0, 2.0]
    assert faithfulness.baseline_values(images, "min").flatten().tolist() == [-2.0]
    with pytest.raises(ValueError, match="Unknown baseline 'max'"):
        faithfulness.baseline_values(images, "max")


def test_removed_sets_the_masked_pixels_of_every_channel_to_the_baseline():
    images = torch.tensor([[[[1.0, 3.0]], [[-2.0, 6.0]]]])
    masks = torch.tensor([[[[True, False]], [[False, True]]]])  # two masks of one image
    out = faithfulness.removed(images, masks, torch.tensor([[[[9.0]], [[8.0]]]]))
    assert out.shape == (1, 2, 2, 1, 2)
    assert out[0, 0].flatten().tolist() == [9.0, 3.0, 8.0, 6.0]
    assert out[0, 1].flatten().tolist() == [1.0, 9.0, -2.0, 8.0]
    elements = torch.tensor([[[[[True, False]], [[False, False]]]]])  # one mask of channel 0, pixel 0
    assert faithfulness.removed(images, elements, torch.zeros(1, 1, 1, 1)).flatten().tolist() == [0, 3, -2, 6]


def test_attribution_sums_of_pixel_masks_and_of_elementwise_weights():
    maps = torch.tensor([[[[1.0, 2.0]], [[10.0, 20.0]]]])  # [1, 2 channels, 1, 2]
    masks = torch.tensor([[[[[1.0, 0.0]]], [[[1.0, 1.0]]]]])  # [1, 2, 1 channel, 1, 2]
    assert faithfulness.attribution_sums(maps, masks).tolist() == [[11.0, 33.0]]
    noise = torch.tensor([[[[[0.5, -1.0]], [[2.0, 0.0]]]]])  # [1, 1, 2 channels, 1, 2]
    assert faithfulness.attribution_sums(maps, noise).tolist() == [[0.5 - 2.0 + 20.0]]
    one_channel = maps[:, :1]  # stands for both input channels: 0.5·1 − 1·2 + 2·1 + 0·2
    assert faithfulness.attribution_sums(one_channel, noise).tolist() == [[0.5]]


def test_infidelity_as_defined_and_with_the_optimal_scale():
    predicted, drops = torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]])
    # ((1 − 2)² + (2 − 4)²) / 2; β = (1·2 + 2·4) / (1 + 4) = 2 makes the prediction exact
    assert faithfulness.infidelity(predicted, drops, scaled=False).tolist() == [2.5]
    assert faithfulness.optimal_scale(predicted, drops).tolist() == [2.0]
    assert faithfulness.infidelity(predicted, drops, scaled=True).tolist() == [0.0]
    # β = (1·1 + 1·3) / 2 = 2: ((2 − 1)² + (2 − 3)²) / 2
    assert faithfulness.infidelity(torch.ones(1, 2), torch.tensor([[1.0, 3.0]]), scaled=True).tolist() == [
        1.0
    ]


def test_a_map_predicting_nothing_scores_the_mean_squared_drop_whatever_its_scale():
    drops = torch.tensor([[1.0, -3.0]])
    assert faithfulness.optimal_scale(torch.zeros(1, 2), drops).tolist() == [0.0]
    for scaled in (True, False):
        assert faithfulness.infidelity(torch.zeros(1, 2), drops, scaled=scaled).tolist() == [5.0]


def test_pearson_of_a_hand_computed_pair_and_of_exact_lines():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 4.0, 7.0], [5.0, 7.0, 9.0], [3.0, 2.0, 1.0]], dtype=torch.float64)
    # centred a = (−1, 0, 1), centred b = (−7, −1, 8)/3: r = 5 / (√2 · √114 / 3)
    np.testing.assert_allclose(faithfulness.pearson(a, b), [15 / math.sqrt(228), 1.0, -1.0])


def test_pearson_is_undefined_for_a_constant_row_even_when_rounding_makes_it_vary():
    a = torch.tensor([[0.1, 0.1 + 1e-9, 0.1], [1.0, 2.0, 4.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    assert faithfulness.pearson(a, b).isnan().tolist() == [True, True]


def linear_case(seed: int = 0):
    """A linear model f(x) = W·x + c on 2×4×4 images, an image batch and its targets."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 3)).double()
    images = torch.rand(2, 2, 4, 4, dtype=torch.float64)
    targets = torch.tensor([0, 2])
    weights = model[1].weight[targets].view(2, 2, 4, 4).detach()
    return model, images, targets, weights


def target_drops(model, images, perturbed, targets):
    with torch.no_grad():
        before = model(images).gather(1, targets[:, None])
        n = perturbed.shape[1]
        after = model(perturbed.flatten(0, 1)).view(len(images), n, -1)
        return before - after.gather(2, targets[:, None, None].expand(-1, n, 1))[..., 0]


def test_on_a_linear_model_input_x_gradient_removals_are_exact():
    """f(x) − f(x with S set to 0) = Σ_{i∈S} w_i·x_i: faithfulness correlation 1, square infidelity 0."""
    model, images, targets, weights = linear_case()
    input_x_gradient = weights * images
    generator = rng()
    masks = torch.from_numpy(np.stack([faithfulness.subset_masks(generator, 20, 4, 4, 5) for _ in range(2)]))
    drops = target_drops(model, images, faithfulness.removed(images, masks, torch.zeros(2, 1, 1, 1)), targets)
    predicted = faithfulness.attribution_sums(input_x_gradient, masks[:, :, None].double())
    np.testing.assert_allclose(faithfulness.pearson(predicted, drops), [1.0, 1.0])
    assert faithfulness.infidelity(predicted, drops, scaled=False).max() < 1e-24


def test_on_a_linear_model_the_gradient_has_gaussian_infidelity_0_and_input_x_gradient_does_not():
    model, images, targets, weights = linear_case()
    generator = rng()
    noise = torch.from_numpy(
        np.stack([faithfulness.gaussian_noise(generator, 30, (2, 4, 4), 0.1) for _ in range(2)])
    )
    noise = noise.double()
    drops = target_drops(model, images, images[:, None] - noise, targets)
    gradient = faithfulness.attribution_sums(weights, noise)
    assert faithfulness.infidelity(gradient, drops, scaled=False).max() < 1e-24
    input_x_gradient = faithfulness.attribution_sums(weights * images, noise)
    assert faithfulness.infidelity(input_x_gradient, drops, scaled=False).min() > 1e-4
