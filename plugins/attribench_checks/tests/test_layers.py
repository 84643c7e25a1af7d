import pytest
import torch
from attribench_checks.layers import RandomiseLayers, parameter_layers, reinitialise
from torch import nn

from attribench_core import ModelError, reference_models


class ShortcutFirst(nn.Module):
    """A residual block that registers its shortcut last but calls it first, with an unused head, a
    module called twice and a parameter of its own (a learned scale)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.shortcut = nn.Conv2d(3, 4, 1)
        self.unused = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        identity = self.shortcut(x)
        out = self.bn(self.conv(x)) + identity
        return self.scale * self.bn(out).mean(dim=(2, 3))


def _images(size=16):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_layers_come_in_the_order_a_forward_pass_calls_them():
    model = ShortcutFirst().eval()
    registered = [name for name, m in model.named_modules() if next(m.parameters(False), None) is not None]
    assert registered == ["", "conv", "bn", "shortcut", "unused"]
    # the root owns `scale` and is called first; bn once though called twice; the unused head is left out
    assert parameter_layers(model, _images()) == ["", "shortcut", "conv", "bn"]
    assert not any(m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_a_resnet_with_batchnorm_and_residual_adds_lists_every_conv_bn_and_the_head_in_forward_order():
    torch.manual_seed(0)
    model = reference_models.resnet18(num_classes=4, width=4).eval()
    block = ["conv1", "bn1", "conv2", "bn2"]
    expected = ["conv1", "bn1"]
    for stage in (1, 2, 3, 4):
        for index in (0, 1):
            expected += [f"layer{stage}.{index}.{name}" for name in block]
            if stage > 1 and index == 0:  # BasicBlock calls its downsample after bn2
                expected += [f"layer{stage}.0.downsample.0", f"layer{stage}.0.downsample.1"]
    assert parameter_layers(model, _images(32)) == [*expected, "fc"]


def test_a_model_that_calls_no_parameterised_module_is_refused():
    with pytest.raises(ModelError, match="no layer to randomise"):
        parameter_layers(nn.Sequential(nn.ReLU(), nn.Flatten()), _images())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_randomise_layers_reinitialises_exactly_the_named_layers_from_the_generator():
    torch.manual_seed(0)
    model = reference_models.resnet18(num_classes=4, width=4).eval()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            for value in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                value.uniform_(0.5, 1.5)  # trained-looking affine parameters and statistics
    before, global_state = _state(model), torch.get_rng_state()
    alteration = RandomiseLayers(("fc", "layer4.1.bn2"))
    altered = alteration.alter(model, torch.Generator().manual_seed(5))
    after = altered.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {
        "fc.weight",
        "fc.bias",
        "layer4.1.bn2.weight",
        "layer4.1.bn2.bias",
        "layer4.1.bn2.running_mean",
        "layer4.1.bn2.running_var",
    }
    bn = model.layer4[1].bn2  # BatchNorm's reset: γ = 1, β = 0, statistics of a fresh layer
    assert (bn.weight == 1).all() and (bn.bias == 0).all()
    assert (bn.running_mean == 0).all() and (bn.running_var == 1).all()
    assert torch.equal(torch.get_rng_state(), global_state)  # torch's global generator untouched
    torch.manual_seed(0)
    again = RandomiseLayers(("fc", "layer4.1.bn2")).alter(
        reference_models.resnet18(num_classes=4, width=4), torch.Generator().manual_seed(5)
    )
    assert torch.equal(again.fc.weight, altered.fc.weight)  # the same generator, the same weights
    other = RandomiseLayers(("fc",)).alter(
        reference_models.resnet18(num_classes=4, width=4), torch.Generator().manual_seed(6)
    )
    assert not torch.equal(other.fc.weight, altered.fc.weight)


def test_a_module_without_reset_parameters_keeps_its_parameters_scale():
    model = ShortcutFirst()
    with torch.no_grad():
        model.scale.copy_(torch.tensor([2.0]))
    conv = model.conv.weight.clone()
    reinitialise(model, torch.Generator().manual_seed(0))  # the root: its own `scale`, not its children
    assert model.scale.item() != 2.0 and model.conv.weight.equal(conv)
    big = nn.Module()
    big.weight = nn.Parameter(torch.randn(10_000) * 3 + 1)
    reinitialise(big, torch.Generator().manual_seed(0))
    assert big.weight.mean().item() == pytest.approx(1, abs=0.1)
    assert big.weight.std().item() == pytest.approx(3, rel=0.05)
