"""The Explainer base: the model is restored whatever `explain` does; the contract helper catches misfits."""

import pytest
import torch

from attribench_core import Explainer
from attribench_core.testing import check_explainer, tiny_model


class Vandal(Explainer):
    """Does everything an explainer must not leave behind, then optionally raises."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail

    def explain(self, model, inputs, targets):
        model.train()
        model[0].register_forward_hook(lambda *a: None)
        model[0].rule = "epsilon"
        for p in model.parameters():
            p.requires_grad_(False)
        bn = model[1]
        bn(torch.randn(4, 6, 8, 8) * 5 + 3)  # train-mode BatchNorm updates its running statistics
        if self.fail:
            raise RuntimeError("explain failed")
        return inputs.clone()


def bn_model():
    layers = (torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU())
    head = (torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    return torch.nn.Sequential(*layers, *head).eval()


@pytest.mark.parametrize("fail", [False, True])
def test_model_is_restored_after_explain_and_after_an_exception(fail):
    model = bn_model()
    stats = model[1].running_mean.clone()
    x, t = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    if fail:
        with pytest.raises(RuntimeError, match="explain failed"):
            Vandal(fail=True)(model, x, t)
    else:
        Vandal()(model, x, t)
    assert not model.training and not any(m.training for m in model.modules())
    assert not model[0]._forward_hooks
    assert not hasattr(model[0], "rule")
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(model[1].running_mean, stats)


def test_gradients_work_inside_inference_mode():
    class Grad(Explainer):
        def explain(self, model, inputs, targets):
            x = inputs.clone().requires_grad_(True)
            return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]

    model = tiny_model()
    with torch.inference_mode():
        out = Grad()(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
    assert out.abs().sum() > 0


def test_wrong_output_shape_is_named():
    class Flat(Explainer):
        def explain(self, model, inputs, targets):
            return inputs.mean(1)

    expected = r"Flat.explain returned shape \(3, 16, 16\); expected \(3, 3, 16, 16\)"
    with pytest.raises(ValueError, match=expected):
        check_explainer(Flat())


class Reporting(Explainer):
    """Reports a per-image diagnostic on the first call only (or a malformed one)."""

    def __init__(self, values=None):
        super().__init__()
        self.values, self.calls = values, 0

    def explain(self, model, inputs, targets):
        self.calls += 1
        if self.calls == 1:
            self.diagnostics["peak"] = inputs.amax((1, 2, 3)) if self.values is None else self.values
            self.diagnostic_notes["peak"] = "largest pixel"
        return inputs.clone()


def test_diagnostics_are_checked_per_image_and_reset_for_every_call():
    model, inputs, targets = tiny_model(), torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 0])
    explainer = Reporting()
    explainer(model, inputs, targets)
    torch.testing.assert_close(explainer.diagnostics["peak"], inputs.amax((1, 2, 3)))
    assert explainer.diagnostic_notes == {"peak": "largest pixel"}
    explainer(model, inputs, targets)
    assert explainer.diagnostics == {} and explainer.diagnostic_notes == {}


@pytest.mark.parametrize("values", [torch.zeros(2), torch.zeros(3, 1)])
def test_a_diagnostic_without_one_value_per_image_is_named(values):
    with pytest.raises(
        ValueError, match=r"Reporting.explain reported diagnostic 'peak' of shape \(\d, ?\d?\)"
    ):
        Reporting(values)(tiny_model(), torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 0]))
