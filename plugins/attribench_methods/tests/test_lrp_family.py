"""The LRP family (LRP-z, presets A/B-flat, Deep Taylor), DeepLIFT RevealCancel, and the refusal of
functional operations (residual additions, torch.cat, F.relu) that these rules cannot see: conservation,
hand computations, an independent dense-matrix reference of every rule, and the Explainer contract."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attribench_methods import propagation as prop
from attribench_methods.lrp_rules import AlphaBetaRule, GradientRule
from attribench_methods.model_checks import UnsupportedModelError
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule
from torch import nn

from attribench_core import reference_models
from attribench_core.errors import ParameterError
from attribench_core.model import ModelInfo, attach_info
from attribench_core.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, Normalized
from attribench_core.testing import check_explainer

LRP_FAMILY = {
    "lrp_epsilon": prop.LRPEpsilon,
    "lrp_z": prop.LRPZ,
    "lrp_alpha1beta0_flat": prop.LRPAlpha1Beta0Flat,
    "lrp_alpha2beta1_flat": prop.LRPAlpha2Beta1Flat,
    "deep_taylor": prop.DeepTaylor,
}
CHAIN_ONLY = {**LRP_FAMILY, "deeplift_rc": prop.DeepLiftRevealCancel}


def sums(attributions: torch.Tensor) -> torch.Tensor:
    return attributions.flatten(1).sum(1)


def logits_of(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, t[:, None]).squeeze(1)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the Explainer contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHAIN_ONLY))
def test_explainer_contract_on_the_core_tiny_model(name) -> None:
    out = check_explainer(CHAIN_ONLY[name]())
    assert out.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CHAIN_ONLY))
def test_inplace_and_reused_relus_give_the_same_map(zoo, cnn, images, targets, name) -> None:
    expected = CHAIN_ONLY[name]()(cnn, images, targets)
    reused = zoo.ReusedReLUCNN(cnn).eval()
    before = zoo.snapshot(reused)
    torch.testing.assert_close(CHAIN_ONLY[name]()(reused, images, targets), expected, rtol=1e-5, atol=1e-7)
    zoo.assert_same_snapshot(before, zoo.snapshot(reused))


# --- conservation ----------------------------------------------------------------------------------------


def pooled_net(bias: bool = False) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2),
        nn.Identity(), nn.Flatten(), nn.Linear(16, 5, bias=bias),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("build", ["cnn", "pooled"])
def test_lrp_z_and_presets_conserve_relevance_without_bias(zoo, images, targets, build) -> None:
    # Flat and α-β rules with α − β = 1 conserve on bias-free layers; ε → 0 on the Linear layers.
    torch.manual_seed(0)
    model = zoo.scaled(zoo.SmallCNN(bias=False) if build == "cnn" else pooled_net())
    logits = logits_of(model, images, targets)
    torch.testing.assert_close(sums(prop.LRPZ()(model, images, targets)), logits)
    for preset in (prop.LRPAlpha1Beta0Flat, prop.LRPAlpha2Beta1Flat):
        torch.testing.assert_close(
            sums(preset(epsilon=1e-9)(model, images, targets)), logits, rtol=1e-4, atol=1e-6
        )
        absorbed = sums(preset()(model, images, targets))  # ε = 1 on the Linear layer absorbs some
        assert (absorbed.abs() < logits.abs()).all()


@pytest.mark.parametrize("output_rule", ["wsquare", "zplus"])
def test_deep_taylor_conserves_positive_relevance_without_bias(zoo, images, output_rule) -> None:
    torch.manual_seed(0)
    model = zoo.scaled(zoo.SmallCNN(bias=False))
    targets = torch.tensor([0, 1, 2, 3, 4]).repeat_interleave(3)
    x = images.repeat(5, 1, 1, 1)
    logits = logits_of(model, x, targets)
    assert (logits > 0).any() and (logits < 0).any()
    got = sums(prop.DeepTaylor(output_rule=output_rule)(model, x, targets))
    torch.testing.assert_close(got, logits.clamp(min=0), rtol=1e-4, atol=1e-6)  # ReLU(logit), as innvestigate


# --- every rule against an independent dense-matrix reference --------------------------------------------


def safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def eps_rule(epsilon: float):
    def rule(m, b, a, r):
        z = m @ a + b
        return a * (m.T @ (r / (z + epsilon * np.where(z >= 0, 1.0, -1.0))))

    return rule


def alpha_beta(alpha: float, beta: float, bias: bool = True):
    def rule(m, b, a, r):
        c = m * a[None, :]  # c[j, i] = a_i w_ij
        cp, cn = np.clip(c, 0, None), np.clip(c, None, 0)
        shift = b if bias else 0.0  # innvestigate: the whole bias in both denominators
        return alpha * cp.T @ safe(r, cp.sum(1) + shift) - beta * cn.T @ safe(r, cn.sum(1) + shift)

    return rule


def flat(m, b, a, r):
    connected = (m != 0).astype(float)  # random weights: zero only outside the receptive field
    return connected.T @ safe(r, connected.sum(1))


def w_square(m, b, a, r):
    return (m**2).T @ safe(r, (m**2).sum(1))


def bounded(low: float, high: float):
    def rule(m, b, a, r):
        c = m * a[None, :] - low * np.clip(m, 0, None) - high * np.clip(m, None, 0)
        return c.T @ safe(r, c.sum(1))

    return rule


def dense(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, bias per output) of a Conv2d or Linear layer on inputs of `in_shape`."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
    with torch.no_grad():
        layer = layer.double()
        out = (
            layer._conv_forward(basis, layer.weight, None)
            if isinstance(layer, nn.Conv2d)
            else basis @ layer.weight.T
        )
        bias = (
            torch.zeros(out.shape[1:], dtype=torch.float64)
            if layer.bias is None
            else (layer.bias.view(-1, *([1] * (out.dim() - 2))).expand(out.shape[1:]))
        )
    layer.float()
    return out.reshape(n, -1).T.detach().numpy(), bias.reshape(-1).detach().numpy()  # fmt: skip


def reference(layers, x: torch.Tensor, target: int, rules, positive_output: bool = False) -> np.ndarray:
    """Relevance of a ReLU net given as dense (matrix, bias) layers, ReLU after all but the last."""
    acts = [x.double().flatten().numpy()]
    for k, (m, b) in enumerate(layers):
        z = m @ acts[-1] + b
        acts.append(np.maximum(z, 0) if k < len(layers) - 1 else z)
    relevance = np.zeros_like(acts[-1])
    relevance[target] = max(acts[-1][target], 0) if positive_output else acts[-1][target]
    for k in reversed(range(len(layers))):
        relevance = rules[k](*layers[k], acts[k], relevance)
    return relevance.reshape(x.shape)


def small_net(bias: bool = True) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 5, bias=bias),
    ).eval()  # fmt: skip


def dense_layers(model: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    return [dense(model[0], (3, 6, 6)), dense(model[2], (4, 6, 6)), dense(model[5], (144,))]


@pytest.mark.parametrize(
    ("explainer", "rules", "positive_output"),
    [
        (prop.LRPZ(), [eps_rule(1e-9)] * 3, False),
        (prop.LRPEpsilon(epsilon=0.5), [eps_rule(0.5)] * 3, False),
        (prop.LRPAlpha1Beta0Flat(), [flat, alpha_beta(1, 0), eps_rule(1.0)], False),
        (prop.LRPAlpha2Beta1Flat(epsilon=0.1), [flat, alpha_beta(2, 1), eps_rule(0.1)], False),
        (prop.DeepTaylor(), [bounded(0, 1), alpha_beta(1, 0, bias=False), w_square], True),
        (
            prop.DeepTaylor(output_rule="zplus", low=-1.0),
            [bounded(-1, 1), *[alpha_beta(1, 0, bias=False)] * 2],
            True,
        ),
    ],
    ids=["z", "epsilon", "preset_a_flat", "preset_b_flat", "deep_taylor", "deep_taylor_zplus"],
)
def test_rules_match_a_dense_matrix_reference(explainer, rules, positive_output) -> None:
    model = small_net()
    with torch.no_grad():
        model[5].weight.mul_(4)
    x = torch.rand((4, 3, 6, 6), generator=seeded(2))
    targets = torch.tensor([0, 1, 2, 3])
    got = explainer(model, x, targets)
    layers = dense_layers(model)
    for b in range(len(x)):
        expected = reference(layers, x[b], int(targets[b]), rules, positive_output)
        torch.testing.assert_close(got[b].double(), torch.from_numpy(expected), rtol=2e-4, atol=1e-6)


def test_alpha2beta1_on_a_two_layer_mlp_by_hand() -> None:
    # Both Linear layers with α2β1 and signed inputs, with and without bias; conserving without bias.
    for bias in (True, False):
        torch.manual_seed(1)
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(8, 6, bias=bias), nn.ReLU(), nn.Linear(6, 3, bias=bias)
        ).eval()
        model[0].rule = GradientRule()
        model[1].rule, model[3].rule = AlphaBetaRule(2, 1, bias=bias), AlphaBetaRule(2, 1, bias=bias)
        x = torch.rand((2, 2, 2, 2), generator=seeded(4)) * 2 - 1
        targets = torch.tensor([0, 2])
        got = LRP(model).attribute(x.clone().requires_grad_(True), target=targets).detach()
        layers = [
            (layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy() if bias else 0.0)
            for layer in (model[1], model[3])
        ]
        for b in range(2):
            expected = reference(layers, x[b], int(targets[b]), [alpha_beta(2, 1, bias)] * 2)
            torch.testing.assert_close(got[b].double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-6)
        if not bias:
            torch.testing.assert_close(sums(got), logits_of(model, x, targets), rtol=1e-4, atol=1e-6)


def test_alpha1beta0_equals_captums_rule_on_non_negative_inputs(zoo, cnn, images, targets) -> None:
    # Captum's Alpha1_Beta0_Rule (weights clamped, bias kept) is ours when every input is ≥ 0.
    def run(rule) -> torch.Tensor:
        model = zoo.SmallCNN()
        model.load_state_dict(cnn.state_dict())
        for layer in (model.features[0], model.features[3]):
            layer.rule = rule()
        model.classifier[0].rule = GradientRule()
        return LRP(model.eval()).attribute(images.clone().requires_grad_(True), target=targets).detach()

    torch.testing.assert_close(run(lambda: AlphaBetaRule(1, 0)), run(Alpha1_Beta0_Rule), rtol=1e-4, atol=1e-7)


def test_flat_rule_on_a_single_full_image_convolution_is_uniform(images, targets) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 16), nn.Flatten()).eval()  # the input layer is the output layer
    logits = logits_of(model, images, targets)
    for preset in (prop.LRPAlpha1Beta0Flat, prop.LRPAlpha2Beta1Flat):
        got = preset()(model, images, targets)
        torch.testing.assert_close(got, (logits / (3 * 16 * 16)).view(-1, 1, 1, 1).expand_as(images))


def test_flat_rule_with_padding_by_hand() -> None:
    # One 3×3 conv, padding 1, outputs = classes: output j's value spreads evenly over its window's pixels
    # inside the image (4 at a corner, 6 on an edge, 9 inside).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten()).eval()
    x = torch.rand((3, 1, 4, 4), generator=seeded(5))
    targets = torch.tensor([0, 1, 5])  # corner (0,0), edge (0,1), inside (1,1)
    got = prop.LRPAlpha2Beta1Flat()(model, x, targets)
    logits = logits_of(model, x, targets)
    for b, t in enumerate(targets.tolist()):
        row, col = divmod(t, 4)
        window = torch.zeros(4, 4)
        window[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = 1
        torch.testing.assert_close(got[b, 0], window * logits[b] / window.sum())


def test_deep_taylor_bounded_rule_on_a_linear_model_by_hand(zoo, images, targets) -> None:
    # z^B: R_i = (x_i w_i − l w⁺_i − h w⁻_i) / Σ(...) · ReLU(logit); bounds from ModelInfo or parameters.
    torch.manual_seed(0)
    model = zoo.scaled(zoo.linear_model())
    rows = model[1].weight[targets].detach().view(-1, 3, 16, 16)
    logits = logits_of(model, images, targets).view(-1, 1, 1, 1)

    def expected(low: float, high: float) -> torch.Tensor:
        z = images * rows - low * rows.clamp(min=0) - high * rows.clamp(max=0)
        return z / z.sum((1, 2, 3), keepdim=True) * logits.clamp(min=0)

    torch.testing.assert_close(
        prop.DeepTaylor()(model, images, targets), expected(0, 1), rtol=1e-4, atol=1e-7
    )
    torch.testing.assert_close(
        prop.DeepTaylor(low=-0.5, high=2.0)(model, images, targets), expected(-0.5, 2), rtol=1e-4, atol=1e-7
    )
    attach_info(model, ModelInfo(input_range=(-1.0, 1.0)))
    torch.testing.assert_close(
        prop.DeepTaylor()(model, images, targets), expected(-1, 1), rtol=1e-4, atol=1e-7
    )
    with pytest.raises(ValueError, match="'low' < 'high' required \\(the model's input range"):
        prop.DeepTaylor(low=1.0)(model, images, targets)
    with pytest.raises(ParameterError, match=re.escape("'low' < 'high' required; got low=1.0, high=0.5")):
        prop.DeepTaylor(low=1.0, high=0.5)


def test_bad_parameters_and_input_layers_are_refused(zoo, cnn, images, targets) -> None:
    for preset in (prop.LRPAlpha1Beta0Flat, prop.LRPAlpha2Beta1Flat):
        with pytest.raises(ParameterError, match=re.escape("'epsilon' must be greater than 0; got 0.0")):
            preset(epsilon=0.0)
    model = nn.Sequential(nn.BatchNorm2d(3), zoo.SmallCNN()).eval()
    for explainer in (prop.LRPAlpha1Beta0Flat(), prop.DeepTaylor()):
        with pytest.raises(UnsupportedModelError, match=r"input layer.*module '0' \(BatchNorm2d\)"):
            explainer(model, images, targets)


# --- functional operations: refused by name; reshapes accepted -------------------------------------------


class Residual(nn.Module):
    """conv → relu → (h + conv(h)) → relu → fc: a residual addition in forward (`inplace`: `out += h`)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.fc = nn.Linear(4 * 16 * 16, 5)
        self.add_in_place = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))
        out = self.conv2(h)
        if self.add_in_place:
            out += h
        else:
            out = out + h
        return self.fc(self.relu2(out).flatten(1))


class Concatenated(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.conv1(x))
        return self.fc(torch.cat([a[:, :2], self.conv2(a)[:, 2:]], 1).flatten(1))


class FunctionalReLU(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv1(x)).flatten(1))


class ScaledOutput(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu1(self.conv1(x)).flatten(1)) * 2


class ViewCNN(nn.Module):
    """A plain CNN that reshapes with `x.view(B, -1)` in forward instead of an nn.Flatten."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.conv1, self.relu, self.pool = source.features[0], source.features[1], source.features[2]
        self.conv2, self.relu2, self.fc = source.features[3], source.features[4], source.classifier[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.pool(self.relu(self.conv1(x)))))
        return self.fc(x.view(x.shape[0], -1))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (Residual, r"the input of module 'relu2' \(ReLU\) is computed outside any layer module"),
        (lambda: Residual(inplace=True), r"the input of module 'relu2' \(ReLU\) is changed in place after "
                                          r"module 'conv2'"),
        (Concatenated, r"the input of module 'fc' \(Linear\) is computed outside any layer module"),
        (FunctionalReLU, r"the input of module 'fc' \(Linear\) is computed outside any layer module"),
        (ScaledOutput, r"the model's output is computed outside any layer module"),
    ],
    ids=["residual", "inplace_residual", "cat", "functional_relu", "scaled_output"],
)  # fmt: skip
def test_reveal_cancel_refuses_functional_operations_by_name(zoo, images, targets, build, message) -> None:
    torch.manual_seed(0)
    model = build().eval()
    before = zoo.snapshot(model)
    with pytest.raises(UnsupportedModelError, match=message):
        prop.DeepLiftRevealCancel()(model, images, targets)
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


FUNCTIONAL = {
    "residual": Residual,
    "inplace_residual": lambda: Residual(inplace=True),
    "cat": Concatenated,
    "functional_relu": FunctionalReLU,
    "scaled_output": ScaledOutput,
}


@pytest.mark.parametrize("build", sorted(FUNCTIONAL))
def test_lrp_z_through_functional_operations_is_gradient_times_input(zoo, images, targets, build) -> None:
    # The z-rule of a ReLU network with additions, concatenations, F.relu and scaling in forward equals
    # gradient × input, biases included (Ancona et al. 2018): relevance splits by the z-rule there.
    torch.manual_seed(0)
    model = FUNCTIONAL[build]().eval()
    before = zoo.snapshot(model)
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    torch.testing.assert_close(prop.LRPZ()(model, images, targets), grad * images, rtol=1e-4, atol=1e-7)
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
@pytest.mark.parametrize("build", sorted(FUNCTIONAL))
def test_lrp_family_runs_through_functional_operations(zoo, images, targets, name, build) -> None:
    torch.manual_seed(0)
    model = FUNCTIONAL[build]().eval()
    before = zoo.snapshot(model)
    got = LRP_FAMILY[name]()(model, images, targets)
    assert got.shape == images.shape and torch.isfinite(got).all()
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


class Gated(Residual):
    """A squeeze-excitation-like gate `h · σ(g(h))` written in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))
        return self.fc((h * torch.sigmoid(self.conv2(h))).flatten(1))


class FunctionalGELU(Residual):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.gelu(self.conv1(x)).flatten(1))


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (Gated, r"forward computes sigmoid \(after module 'conv2'\), mul of two computed tensors"),
        (FunctionalGELU, r"forward computes gelu \(after module 'conv1'\) outside layer modules"),
    ],
    ids=["gate", "gelu"],
)
def test_non_linear_code_in_forward_is_refused_by_name(zoo, images, targets, name, build, message) -> None:
    model = build().eval()
    before = zoo.snapshot(model)
    with pytest.raises(UnsupportedModelError, match=message):
        LRP_FAMILY[name]()(model, images, targets)
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


def test_a_residual_addition_splits_relevance_by_the_z_rule_without_bias(images, targets) -> None:
    # Bias-free: relevance is conserved through `out += h` (Captum's LRP used to hand R to both addends).
    torch.manual_seed(0)
    for inplace in (False, True):
        model = Residual(inplace=inplace).eval()
        with torch.no_grad():
            for layer in (model.conv1, model.conv2, model.fc):
                layer.bias.zero_()
        logits = logits_of(model, images, targets)
        torch.testing.assert_close(sums(prop.LRPZ()(model, images, targets)), logits, rtol=1e-4, atol=1e-6)
        got = sums(prop.LRPEpsilon(epsilon=1e-9)(model, images, targets))
        torch.testing.assert_close(got, logits, rtol=1e-4, atol=1e-6)
        # (α-β is not conservative here: the split gives conv2 negative relevance on units whose
        # contributions are all negative, which α1β0 drops.)


def test_deeplift_rescale_still_accepts_a_residual_addition(images, targets) -> None:
    # Captum's DeepLIFT is exact through linear functional operations: no refusal, summation to delta.
    torch.manual_seed(0)
    model = Residual().eval()
    gain = logits_of(model, images, targets) - logits_of(model, torch.zeros_like(images), targets)
    torch.testing.assert_close(sums(prop.DeepLift()(model, images, targets)), gain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CHAIN_ONLY))
def test_a_view_in_forward_is_accepted(cnn, images, targets, name) -> None:
    expected = CHAIN_ONLY[name]()(cnn, images, targets)
    torch.testing.assert_close(CHAIN_ONLY[name]()(ViewCNN(cnn).eval(), images, targets), expected)


def test_trace_names_the_calls_of_a_reused_module(zoo, cnn, images) -> None:
    from attribench_methods.model_checks import canonical_copy

    clone = canonical_copy(zoo.ReusedReLUCNN(cnn), images, method="test")
    trace = prop.trace_layers(clone, images[:1], method="test")
    assert [c.name for c in trace.calls] == ["conv1", "relu (call 1)", "pool", "conv2", "relu (call 2)", "fc"]
    assert [c.source for c in trace.calls] == [-1, 0, 1, 2, 3, 4] and trace.output_source == 5


# --- DeepLIFT RevealCancel --------------------------------------------------------------------------------


def test_reveal_cancel_by_hand() -> None:
    # y = relu(x1 − x2), x = (2, 1), reference 0: Δz⁺ = 2, Δz⁻ = −1 at the ReLU (reference input 0):
    # Δy⁺ = ½(relu(2) − 0) + ½(relu(1) − relu(−1)) = 1.5, Δy⁻ = ½(relu(−1) − 0) + ½(relu(1) − relu(2)) = −0.5,
    # so x1 gets 1.5 and x2 gets −0.5 (Rescale would give 2 and −1); they sum to y(x) − y(0) = 1.
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False), nn.ReLU(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model[3].weight.fill_(1.0)
    x = torch.tensor([2.0, 1.0]).view(1, 1, 1, 2)
    got = prop.DeepLiftRevealCancel()(model, x, torch.tensor([0]))
    torch.testing.assert_close(got, torch.tensor([1.5, -0.5]).view(1, 1, 1, 2))
    rescale = prop.DeepLift()(model, x, torch.tensor([0]))
    torch.testing.assert_close(rescale, torch.tensor([2.0, -1.0]).view(1, 1, 1, 2))


@pytest.mark.parametrize("build", ["cnn", "smooth", "pooled", "late_max_pool", "batchnorm"])
def test_reveal_cancel_sums_to_delta(zoo, images, targets, build) -> None:
    torch.manual_seed(0)
    if build == "late_max_pool":  # the reference's activations vary over the windows near the border
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5),
        )  # fmt: skip
    elif build == "batchnorm":
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1),
                              nn.AdaptiveMaxPool2d(4), nn.Flatten(), nn.Linear(64, 5))  # fmt: skip
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.2, 0.2)
            model[1].running_var.uniform_(0.5, 2.0)
            model[1].weight.uniform_(-1, 1)  # negative scales too
    else:
        model = {"cnn": zoo.SmallCNN, "smooth": zoo.smooth_cnn, "pooled": lambda: pooled_net(bias=True)}[
            build
        ]()
    model = zoo.scaled(model)
    gain = logits_of(model, images, targets) - logits_of(model, torch.zeros_like(images), targets)
    got = sums(prop.DeepLiftRevealCancel()(model, images, targets))
    torch.testing.assert_close(got, gain, rtol=1e-4, atol=1e-5)


def test_reveal_cancel_is_rescale_without_cancellation(zoo, images, targets) -> None:
    # Non-negative weights and inputs: every Δx⁻ is 0, so RevealCancel reduces to Rescale (Captum's DeepLift).
    torch.manual_seed(0)
    model = pooled_net(bias=True)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    expected = prop.DeepLift()(model, images, targets)
    torch.testing.assert_close(
        prop.DeepLiftRevealCancel()(model, images, targets), expected, rtol=1e-4, atol=1e-6
    )


def test_reveal_cancel_on_a_linear_model_is_w_times_x(zoo, images, targets) -> None:
    torch.manual_seed(0)
    model = zoo.linear_model().eval()
    rows = model[1].weight[targets].detach().view(-1, 3, 16, 16)
    got = prop.DeepLiftRevealCancel()(model, images, targets)
    torch.testing.assert_close(got, rows * images, rtol=1e-5, atol=1e-6)


class DeadBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.a(x)
        return self.fc(self.b(x).flatten(1))


def test_reveal_cancel_refuses_what_it_cannot_run(zoo, images, targets) -> None:
    rc = prop.DeepLiftRevealCancel()
    with pytest.raises(
        UnsupportedModelError, match=r"module 'b' \(Conv2d\) does not take the output of module 'a'"
    ):
        rc(DeadBranch(), images, targets)
    model = zoo.SmallCNN()
    model.features[1] = nn.GELU()
    with pytest.raises(UnsupportedModelError, match=r"module 'features\.1' \(GELU\) has no DeepLIFT rule"):
        rc(model, images, targets)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 14 * 14, 5))
    with pytest.raises(UnsupportedModelError, match=r"module '1' \(BatchNorm2d\) is in training mode"):
        rc(model.train(), images, targets)
    with pytest.raises(ValueError, match=r"Targets must lie in \[0, 5\)"):
        rc(model.eval(), images, torch.tensor([0, 7, 1]))


# --- real architectures (attribench_core.reference_models) and input normalisation ----------------------


def without_shifts(model: nn.Module) -> nn.Module:
    """Zero biases, BatchNorm without shift (mean 0, β 0) but with seeded scales and variances: every
    relevance the z-rule starts with must reach the input."""
    g = seeded(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    return zero_shifts(model)


def zero_shifts(model: nn.Module) -> nn.Module:
    """`model` in eval mode with zero biases and BatchNorm without shift (running mean 0, β 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.bias.zero_()
    return model.eval()


ARCHITECTURES = {
    "resnet18": lambda: reference_models.resnet18(num_classes=5, width=4),
    "vgg11_bn": lambda: reference_models.vgg11_bn(num_classes=5, width=4, classifier_width=16),
}


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.rand((2, 3, 32, 32), generator=seeded(11))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_lrp_z_conserves_and_default_epsilon_absorbs_under_one_percent(zoo, photos, arch) -> None:
    # ResNet-18: residual `out += identity`, reused in-place ReLU, BatchNorm, overlapping stem max-pool,
    # torch.flatten in forward; VGG-11-BN: BatchNorm, max-pool, adaptive average pool, dropout.
    torch.manual_seed(0)
    model = without_shifts(ARCHITECTURES[arch]())
    before = zoo.snapshot(model)
    with torch.no_grad():
        targets = model(photos).argmax(1)  # the predicted class: a logit near 0 is absorbed by any ε
    logits = logits_of(model, photos, targets)
    torch.testing.assert_close(sums(prop.LRPZ()(model, photos, targets)), logits, rtol=1e-4, atol=1e-7)
    absorbed = 1 - sums(prop.LRPEpsilon()(model, photos, targets)) / logits
    assert (absorbed.abs() < 0.01).all(), absorbed
    assert ((1 - sums(prop.LRPEpsilon(epsilon=1.0)(model, photos, targets)) / logits) > 0.9).all()
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_lrp_family_runs_on_resnet18_and_vgg11_bn(zoo, photos, arch, name) -> None:
    torch.manual_seed(0)
    model = ARCHITECTURES[arch]().eval()
    normalized = Normalized(Normalize(IMAGENET_MEAN, IMAGENET_STD), model).eval()
    before = zoo.snapshot(normalized)
    for subject in (model, normalized):
        got = LRP_FAMILY[name]()(subject, photos, torch.tensor([1, 2]))
        assert got.shape == photos.shape and torch.isfinite(got).all() and got.abs().sum() > 0
    zoo.assert_same_snapshot(before, zoo.snapshot(normalized))


def calibrated(model: nn.Module) -> nn.Module:
    """BatchNorm statistics from a batch of random images (the untrained EfficientNet's activations vanish
    by 40× per stage otherwise), then no shifts and no biases."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
                m.reset_running_stats()
        model.train()(torch.rand((8, 3, 32, 32), generator=seeded(3)))
    return zero_shifts(model)


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
def test_lrp_family_runs_on_efficientnet(zoo, photos, name) -> None:
    # SiLU by the identity rule, the squeeze-excitation gates by signal-take-all, stochastic depth (eval)
    # as an identity, depthwise convolutions: LRP-z conserves without shifts, the default ε absorbs < 1 %.
    torch.manual_seed(0)
    model = calibrated(reference_models.efficientnet_b0(num_classes=5, width_mult=0.25, depth_mult=0.25))
    before = zoo.snapshot(model)
    with torch.no_grad():
        targets = model(photos).argmax(1)
    logits = logits_of(model, photos, targets)
    got = LRP_FAMILY[name]()(model, photos, targets)
    assert torch.isfinite(got).all() and got.abs().sum() > 0
    if name == "lrp_z":
        torch.testing.assert_close(sums(got), logits, rtol=1e-4, atol=1e-6)
    elif name == "lrp_epsilon":
        assert ((1 - sums(got) / logits).abs() < 0.01).all()
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


class SqueezeExcited(nn.Module):
    """conv → ReLU → h · σ(fc(mean h)) → fc, the gate an nn.Sigmoid module (`detach_gate`: the gate as a
    constant, for the expected value)."""

    def __init__(self, detach_gate: bool = False) -> None:
        super().__init__()
        self.conv, self.relu, self.pool = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        self.squeeze, self.gate, self.fc = nn.Conv2d(4, 4, 1), nn.Sigmoid(), nn.Linear(4 * 16 * 16, 5)
        self.detach_gate = detach_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        gate = self.gate(self.squeeze(self.pool(h)))
        return self.fc((h * (gate.detach() if self.detach_gate else gate)).flatten(1))


def test_squeeze_excitation_gates_give_their_relevance_to_the_signal(images, targets) -> None:
    # Signal-take-all (Arras et al. 2017): LRP-z is gradient × input of the network with its gate constant.
    torch.manual_seed(0)
    model = SqueezeExcited().eval()
    constant_gate = SqueezeExcited(detach_gate=True).eval()
    constant_gate.load_state_dict(model.state_dict())
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(constant_gate(x).gather(1, targets[:, None]).sum(), x)
    torch.testing.assert_close(prop.LRPZ()(model, images, targets), grad * images, rtol=1e-4, atol=1e-7)


class GateIntoLayer(SqueezeExcited):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        return self.fc(self.gate(h).flatten(1))


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
def test_batch_statistics_are_refused(images, targets, name) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(392, 5))
    with pytest.raises(UnsupportedModelError, match=r"module '1' \(BatchNorm2d\) is in training mode"):
        LRP_FAMILY[name]()(model.train(), images, targets)


def test_a_sigmoid_used_other_than_as_a_gate_is_refused(images, targets) -> None:
    with pytest.raises(
        UnsupportedModelError, match=r"module 'fc' takes the output of module 'gate' \(Sigmoid\)"
    ):
        prop.LRPZ()(GateIntoLayer().eval(), images, targets)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5), nn.Sigmoid())
    with pytest.raises(
        UnsupportedModelError, match=r"the model returns the output of module '2' \(Sigmoid\)"
    ):
        prop.LRPZ()(model, images, targets)


def folded_by_hand(network: nn.Sequential, normalize: Normalize) -> nn.Sequential:
    """`network` with (x − mean) / std folded into its first convolution (no padding)."""
    folded = copy.deepcopy(network)
    conv = folded[0]
    with torch.no_grad():
        weight = conv.weight / normalize.std.view(1, -1, 1, 1)
        conv.bias -= (weight * normalize.mean.view(1, -1, 1, 1)).sum((1, 2, 3))
        conv.weight.copy_(weight)
    return folded


@pytest.mark.parametrize("name", sorted(LRP_FAMILY))
def test_input_normalisation_is_folded_into_the_input_layer(photos, name) -> None:
    # LRP of Normalized(N, net) on [0, 1] images equals LRP of net with N folded into its first conv: the
    # ε/z rule measures the input from black, flat is unchanged, z^B gets the per-channel normalised bounds.
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 5),
    ).eval()  # fmt: skip
    with torch.no_grad():
        network[0].weight.mul_(3)  # logits well above 0 for Deep Taylor
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    targets = torch.tensor([1, 4])
    expected = LRP_FAMILY[name]()(folded_by_hand(network, normalize), photos, targets)
    got = LRP_FAMILY[name]()(Normalized(normalize, network).eval(), photos, targets)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


class PaddedFirst(nn.Module):
    """A network whose input goes through code in forward (padding) before its first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4 * 32 * 32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(F.pad(x, (1, 1, 1, 1)))).flatten(1))


@pytest.mark.parametrize("build", ["resnet18", "padded_first"])
def test_lrp_z_behind_normalize_is_gradient_times_the_unit_range_input(photos, build) -> None:
    # Folding the normalisation into the input layer makes LRP-z of a ReLU network x ⊙ ∂f/∂x on the [0, 1]
    # image (biases and BatchNorm shifts included), also where code in forward precedes the first layer.
    torch.manual_seed(0)
    network = ARCHITECTURES["resnet18"]() if build == "resnet18" else PaddedFirst()
    model = Normalized(Normalize(IMAGENET_MEAN, IMAGENET_STD), network).eval()
    targets = torch.tensor([1, 3])
    x = photos.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    torch.testing.assert_close(prop.LRPZ()(model, photos, targets), grad * photos, rtol=1e-4, atol=1e-6)


class ConvUsedTwice(nn.Module):
    """A convolution whose output feeds its BatchNorm and, in forward, an addition: it cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.fc = nn.Linear(4 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(self.relu(self.bn(h) + h).flatten(1))


def test_batch_norm_is_folded_only_where_that_keeps_the_logits(zoo, images, targets) -> None:
    torch.manual_seed(0)
    model = ConvUsedTwice().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.weight.uniform_(0.5, 2.0)
    before = zoo.snapshot(model)
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    torch.testing.assert_close(prop.LRPZ()(model, images, targets), grad * images, rtol=1e-4, atol=1e-7)
    zoo.assert_same_snapshot(before, zoo.snapshot(model))


def test_a_normalize_inside_the_network_is_refused(images, targets) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 3, 1), Normalize(IMAGENET_MEAN, IMAGENET_STD), nn.Flatten(), nn.Linear(768, 5)
    ).eval()
    with pytest.raises(
        UnsupportedModelError, match=r"module '1' \(Normalize\) does not take the model input"
    ):
        prop.LRPZ()(model, images, targets)


def test_sliced_and_channels_last_inputs_give_the_same_map() -> None:
    torch.manual_seed(0)
    model = ARCHITECTURES["resnet18"]().eval()
    big = torch.rand((2, 3, 40, 40), generator=seeded(12))
    sliced = big[:, :, 3:35, 5:37]
    expected = prop.LRPZ()(model, sliced.contiguous(), torch.tensor([0, 1]))
    for x in (sliced, sliced.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(
            prop.LRPZ()(model, x, torch.tensor([0, 1])), expected, rtol=1e-4, atol=1e-7
        )
