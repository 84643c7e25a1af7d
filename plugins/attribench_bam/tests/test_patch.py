"""The functionally insignificant patch on a tiny CNN: converges, stays in the mask and the bounds."""

from __future__ import annotations

import pytest
import torch
from attribench_bam.patch import PatchResult, optimise_patch, select_insignificant
from torch import nn

B, C, H, W = 2, 3, 8, 8


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random CNN sensitive enough to move its logits by about 10 when the object is pasted in; the
    scenes, a 4×4 object mask and the composites (a flat-coloured object)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(C, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(10)
    images = 0.2 + 0.6 * torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(B, H, W, dtype=torch.bool)
    masks[:, 2:6, 3:7] = True
    composites = torch.where(masks[:, None], torch.tensor([0.9, 0.1, 0.5])[:, None, None], images)
    return model.eval(), images, masks, composites


def test_patch_converges_to_a_large_invisible_perturbation(setup):
    model, images, masks, composites = setup
    with torch.no_grad():
        pasted = torch.linalg.vector_norm(model(composites) - model(images), dim=1)
    result = optimise_patch(model, images, masks, init=composites)
    assert (pasted > 10).all() and (result.logit_distance < 0.15 * pasted).all()
    assert result.prediction_unchanged.all()
    # the size term keeps δ at least as large as the pasted object's
    assert (result.delta.flatten(1).norm(dim=1) > (composites - images).flatten(1).norm(dim=1)).all()
    outside = ~masks[:, None].expand_as(images)
    assert result.delta[outside].eq(0).all() and result.patched[outside].equal(images[outside])
    assert result.patched.min() >= 0 and result.patched.max() <= 1
    torch.testing.assert_close(result.patched, images + result.delta)
    with torch.no_grad():
        recorded = torch.linalg.vector_norm(model(result.patched) - model(images), dim=1)
    torch.testing.assert_close(result.logit_distance, recorded)


def test_steps_follow_the_original_in_grey_levels(setup):
    """α, β and lr are per 8-bit grey level: on 0–255 images with a model that rescales them, the patch
    is the same (the original's setting), which checks the conversion of the loss and the step."""
    model, images, masks, composites = setup
    rescaled = nn.Sequential(_Scale(1 / 255), model)
    unit = optimise_patch(model, images, masks, init=composites, steps=20)
    grey = optimise_patch(rescaled, images * 255, masks, init=composites * 255, steps=20, bounds=(0.0, 255.0))
    torch.testing.assert_close(grey.patched / 255, unit.patched, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grey.logit_distance, unit.logit_distance, rtol=1e-4, atol=1e-5)


def test_without_init_the_patch_is_trivial(setup):
    model, images, masks, _ = setup
    result = optimise_patch(model, images, masks, steps=3)
    assert result.delta.eq(0).all() and result.logit_distance.eq(0).all()


def test_select_insignificant():
    result = PatchResult(
        patched=torch.zeros(4, 1, 1, 1),
        delta=torch.zeros(4, 1, 1, 1),
        logit_distance=torch.tensor([0.1, 0.5, 0.2, 0.9]),
        prediction_unchanged=torch.tensor([True, True, False, True]),
    )
    fields = (result.prediction_unchanged, result.logit_distance)
    assert select_insignificant(*fields).tolist() == [True, True, False, True]
    assert select_insignificant(*fields, max_distance=0.5).tolist() == [True, False, False, False]


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
