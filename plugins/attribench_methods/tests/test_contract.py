"""What every method must do: shapes, dtype, finite values, determinism, device, and leaving the model as
found (normal path, errors inside `explain`, in-place and reused ReLUs)."""

from __future__ import annotations

import copy

import pytest
import torch
from attribench_methods.model_checks import UnsupportedModelError


def expected_shape(zoo, method: str, x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0], 1, *x.shape[2:]) if zoo.EXPLAINERS[method].channel_less else tuple(x.shape)


def test_shape_dtype_finite(zoo, make, method, cnn, images, targets) -> None:
    out = make(method)(cnn, images, targets, generator=zoo.seeded())
    assert tuple(out.shape) == expected_shape(zoo, method, images)
    assert out.dtype == torch.float32 and out.device == images.device
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0


def test_deterministic_under_a_fixed_seed(zoo, make, method, cnn, images, targets) -> None:
    explainer = make(method)
    first = explainer(cnn, images, targets, generator=zoo.seeded(0))
    assert torch.equal(first, explainer(cnn, images, targets, generator=zoo.seeded(0)))
    assert torch.equal(first, explainer(cnn, images, targets, generator=None))  # default: seed 0
    other = explainer(cnn, images, targets, generator=zoo.seeded(1))
    assert torch.equal(first, other) != (method in zoo.STOCHASTIC)


def test_model_left_as_found(zoo, make, method, cnn, images, targets) -> None:
    cnn.features[0].weight.requires_grad_(False)  # a mix of frozen and trainable, of train and eval
    cnn.classifier.train()
    before = zoo.snapshot(cnn)
    explainer = make(method)
    explainer.generator = zoo.seeded()
    explainer.explain(cnn, images, targets)  # explain itself leaves nothing behind
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    explainer(cnn, images, targets, generator=zoo.seeded())
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))


def test_model_left_as_found_after_an_error_in_explain(zoo, make, model_method, cnn, images, targets) -> None:
    cnn.fail = True  # raises at the end of forward, after every hook has fired
    before = zoo.snapshot(cnn)
    with pytest.raises(RuntimeError, match="boom"):
        make(model_method)(cnn, images, targets, generator=zoo.seeded())
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))
    cnn.fail = False
    before = zoo.snapshot(cnn)
    with pytest.raises((ValueError, RuntimeError, IndexError)):
        make(model_method)(cnn, images, torch.tensor([0, 99, 1]), generator=zoo.seeded())
    zoo.assert_same_snapshot(before, zoo.snapshot(cnn))


def test_inplace_relu_gives_the_same_map(zoo, make, method, cnn, images, targets) -> None:
    inplace = zoo.SmallCNN(inplace=True).eval()
    inplace.load_state_dict(cnn.state_dict())
    before = zoo.snapshot(inplace)
    expected = make(method)(cnn, images, targets, generator=zoo.seeded())
    got = make(method)(inplace, images, targets, generator=zoo.seeded())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    zoo.assert_same_snapshot(before, zoo.snapshot(inplace))  # still in-place


def test_reused_inplace_relu_gives_the_same_map(zoo, make, method, cnn, images, targets) -> None:
    reused = zoo.ReusedReLUCNN(cnn).eval()
    before = zoo.snapshot(reused)
    expected = make(method)(cnn, images, targets, generator=zoo.seeded())
    got = make(method)(reused, images, targets, generator=zoo.seeded())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    zoo.assert_same_snapshot(before, zoo.snapshot(reused))


def test_relu_shared_by_parallel_branches_gives_the_same_map(zoo, make, method, images, targets) -> None:
    torch.manual_seed(0)
    separate = zoo.TwoBranches(shared=False).eval()
    shared = zoo.TwoBranches(shared=True).eval()
    shared.load_state_dict(separate.state_dict(), strict=False)
    if method in zoo.LAYER_CHAIN_ONLY:  # the branches meet in a `+` in forward, which these rules cannot see
        for model in (separate, shared):
            with pytest.raises(UnsupportedModelError, match="computed outside any layer module"):
                make(method)(model, images, targets)
        return
    expected = make(method)(separate, images, targets, generator=zoo.seeded())
    got = make(method)(shared, images, targets, generator=zoo.seeded())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_targets_may_live_on_another_device_or_be_a_list(zoo, make, method, cnn, images) -> None:
    expected = make(method)(cnn, images, torch.tensor([1, 2, 3]), generator=zoo.seeded())
    got = make(method)(cnn, images, [1, 2, 3], generator=zoo.seeded())
    assert torch.equal(got, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_cuda_maps_close_to_cpu(zoo, make, method, cnn, images, targets) -> None:
    expected = make(method)(cnn, images, targets, generator=zoo.seeded())
    model = copy.deepcopy(cnn).cuda()
    got = make(method)(model, images.cuda(), targets.cuda(), generator=zoo.seeded())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-5)
