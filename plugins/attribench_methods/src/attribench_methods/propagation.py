"""Relevance-propagation explainers: DeepLIFT (Rescale by Captum, RevealCancel ours) and the LRP family
(Captum `LRP` with Captum's rules and ours from `lrp_rules`), all on `canonical_copy(model)` (Captum's LRP
leaves `rule`/`activations` attributes on the layers it touches).

LRP and RevealCancel only see layer modules, so a probe pass (`trace_layers`) first checks that every layer's
input is the model input or another layer's output (or a reshape of it): a residual addition, `torch.cat`
or `F.relu` in `forward` is refused with the name of the layer it feeds, instead of giving wrong maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from captum import attr as captum_attr
from captum.attr._utils.lrp_rules import EpsilonRule, PropagationRule
from torch import nn

from attribench_core.explainer import Explainer
from attribench_core.model import model_info
from attribench_core.params import Param
from attribench_methods.common import CaptumExplainer, checked_batch, quiet_captum
from attribench_methods.lrp_rules import AlphaBetaRule, BoundedRule, FlatRule, GradientRule, WSquareRule
from attribench_methods.model_checks import PerCall, UnsupportedModelError, canonical_copy, deeplift_model
from attribench_methods.summation import (
    ProductRule,
    deeplift_nonlinearities,
    record_summation_gap,
    refuse_undefined,
)

# Layers the ε rule applies to, layers propagated with the plain z-rule (ε ≈ 0: they are parameter-free or
# per-channel affine, and an ε there would only absorb relevance), and activations relevance passes through.
LRP_EPSILON_LAYERS = (nn.Conv2d, nn.Linear)
LRP_Z_LAYERS = (
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm2d,
    nn.Flatten,
    nn.Identity,
)
LRP_PASS_THROUGH = (nn.ReLU, nn.Dropout)
LRP_RULE_LAYERS = (*LRP_EPSILON_LAYERS, *LRP_Z_LAYERS)
Z_RULE_EPSILON = 1e-9
RESHAPES = (nn.Flatten, nn.Identity, nn.Dropout)  # skipped when looking for the input layer
POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


class DeepLift(CaptumExplainer):
    """DeepLIFT (Shrikumar et al. 2017), Rescale rule, zero (black) reference (Captum `DeepLift`).

    Runs on `deeplift_model(model)`, on which the attributions sum to f(x) − f(0) exactly wherever every
    non-linearity has a rule: also where a ReLU feeds a max-pool directly and for overlapping max-pools
    (ResNet's stem), which Captum alone gets wrong, and through element-wise activation modules Captum has
    no rule for (GELU, SiLU, ReLU6, ...; see `deeplift_model`). Products of two input-dependent tensors
    (squeeze-excitation) get `summation.ProductRule`'s multipliers; linear functional operations (residual
    additions, `torch.cat`) are exact.

    Elsewhere the per-image gap |Σ attributions − (f(x) − f(0))| / |f(x) − f(0)| is recorded as the
    diagnostic `summation_gap` (stored beside the maps) and a gap above 0.1 % is warned about once, naming
    the operations without a rule (activations called as functions in forward, `torch.max`, ...; see
    `summation`). Models with attention or input normalisation (LayerNorm, GroupNorm), where DeepLIFT is
    not defined, are refused naming the module.
    """

    captum_class = "DeepLift"

    def attribute_kwargs(self) -> dict[str, Any]:
        return {"baselines": 0.0, "return_convergence_delta": True}

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        clone = deeplift_model(model, inputs, method="DeepLift")
        self.nonlinearities = deeplift_nonlinearities(clone, inputs[:1])
        refuse_undefined(self.nonlinearities, "DeepLift")
        return clone

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with ProductRule(2 * len(inputs)):  # Captum runs [inputs; references]
            attributions, delta = super().explain(model, inputs, targets)
        sums = attributions.detach().flatten(1).sum(1)
        record_summation_gap(self, sums, sums - delta, "f(x) − f(0)", self.nonlinearities)
        return attributions


# ---------------------------------------------------------------------------------------------------------
# Which layer feeds which: one probe pass


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer (leaf) module in the probe pass."""

    name: str  # its path in the model; "(call k)" added for a module that one forward runs several times
    module: nn.Module
    source: int  # the call whose output feeds it (itself or reshaped); -1: the model input
    in_order: bool  # the input holds the source's elements in the source's order (not a transpose)
    input_shape: tuple[int, ...]  # for the probe's batch of one


@dataclass(frozen=True)
class LayerTrace:
    calls: list[LayerCall]
    output_source: int  # the call that computes the model's output
    output_in_order: bool


def layer_names(model: nn.Module) -> dict[nn.Module, str]:
    """Paths of the leaf modules; the copies inside a `PerCall` are named after the module they replace."""
    names = {m: p for p, m in model.named_modules() if next(m.children(), None) is None}
    for path, module in model.named_modules():
        if isinstance(module, PerCall):
            for i, copy in enumerate(module.copies):
                names[copy] = f"{path} (call {i + 1})"
    names[model] = names.get(model, "") or type(model).__name__
    return names


def _same_elements(t: torch.Tensor, ref: torch.Tensor) -> bool:
    """`t` is `ref` or a view of all of its elements (view, flatten, reshape without copy)."""
    return t is ref or (
        t.numel() == ref.numel() > 0
        and t.device == ref.device
        and t.untyped_storage().data_ptr() == ref.untyped_storage().data_ptr()
        and t.storage_offset() == ref.storage_offset()
    )


def trace_layers(model: nn.Module, probe: torch.Tensor, *, method: str) -> LayerTrace:
    """Run `probe` through `model` once, recording for every layer call which call's output it takes.

    Raises `UnsupportedModelError` naming the layer when its input was computed outside layer modules or
    changed in place after (residual `x + f(x)` or `out += identity`, `torch.cat`, `F.relu`, ...), when a
    layer takes several tensors, or when the model's output is not a layer's output. Errors raised by the
    model's forward itself propagate unchanged.
    """
    names = layer_names(model)
    produced: list[tuple[int, torch.Tensor, int]] = [(-1, probe, probe._version)]
    calls: list[LayerCall] = []
    stack: list[int] = []
    why = (
        f"{method} propagates relevance through layer modules only, so such an operation would silently "
        "give wrong maps. Supported: layer modules called one after another, with reshapes (view, "
        "flatten) between them."
    )

    def source_of(t: torch.Tensor, what: str) -> tuple[int, bool]:
        for index, ref, version in reversed(produced):
            if _same_elements(t, ref):
                if t._version != version:
                    producer = "the model input" if index < 0 else f"module '{calls[index].name}'"
                    raise UnsupportedModelError(
                        f"{method}: {what} is changed in place after {producer} computed it (e.g. "
                        f"`out += identity`, `x.relu_()`). {why}"
                    )
                return index, t is ref or (t.is_contiguous() and ref.is_contiguous())
        raise UnsupportedModelError(
            f"{method}: {what} is computed outside any layer module (a residual addition, torch.cat, F.relu "
            f"or another operation in forward). {why}"
        )

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        name = names.get(module, type(module).__name__)
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if len(tensors) != 1:
            raise UnsupportedModelError(
                f"{method}: module '{name}' ({type(module).__name__}) takes {len(tensors)} tensors; "
                "only single-input layers are supported."
            )
        (x,) = tensors
        source, in_order = source_of(x, f"the input of module '{name}' ({type(module).__name__})")
        stack.append(len(calls))
        calls.append(LayerCall(name, module, source, in_order, tuple(x.shape)))

    def after(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        index = stack.pop()
        for t in output if isinstance(output, tuple | list) else (output,):
            if isinstance(t, torch.Tensor):
                produced.append((index, t, t._version))

    leaves = [m for m in names if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in leaves]
    handles += [m.register_forward_hook(after, with_kwargs=True) for m in leaves]
    try:
        with torch.no_grad():
            out = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor):
        raise UnsupportedModelError(f"{method}: the model returns {type(out).__name__}, not a logits tensor.")
    source, in_order = source_of(out, "the model's output")
    if source < 0:
        raise UnsupportedModelError(f"{method}: the model returns its input; no layer to propagate through.")
    return LayerTrace(calls, source, in_order)


# ---------------------------------------------------------------------------------------------------------
# LRP


def check_lrp_layers(model: nn.Module, method: str) -> None:
    """Raise naming the first module that LRP cannot propagate through: an unknown layer type, a container
    that uses parameters of its own, or a model that is one single module (Captum only looks inside)."""
    known = ", ".join(t.__name__ for t in (*LRP_EPSILON_LAYERS, *LRP_Z_LAYERS, *LRP_PASS_THROUGH))
    for path, module in model.named_modules():
        where = f"{'module ' + repr(path) if path else 'the model'} ({type(module).__name__})"
        if next(module.children(), None) is not None:
            own = [name for name, _ in module.named_parameters(recurse=False)]
            if own:
                raise UnsupportedModelError(
                    f"{method}: {where} uses its own parameters {own} outside of layers; LRP can only "
                    "propagate through layer modules."
                )
        elif module is model:
            raise UnsupportedModelError(f"{method}: {where} has no layer modules to propagate through.")
        elif not isinstance(module, LRP_RULE_LAYERS) and type(module) not in LRP_PASS_THROUGH:
            raise UnsupportedModelError(f"{method}: {where} has no LRP rule; supported layers: {known}.")


def attach_lrp_rules(model: nn.Module, epsilon: float, method: str = "LRPEpsilon") -> None:
    """Give every layer of `model` (a canonical copy) its ε/z rule, or raise naming the first module that
    LRP cannot propagate through (see `check_lrp_layers`)."""
    check_lrp_layers(model, method)
    for module in model.modules():
        if isinstance(module, LRP_EPSILON_LAYERS):
            module.rule = EpsilonRule(epsilon)
        elif isinstance(module, LRP_Z_LAYERS):
            module.rule = EpsilonRule(Z_RULE_EPSILON)


def input_layer(trace: LayerTrace, method: str, rule: str) -> LayerCall:
    """The first Conv2d/Linear call, which only reshapes may precede."""
    for call in trace.calls:
        if isinstance(call.module, LRP_EPSILON_LAYERS):
            return call
        if not isinstance(call.module, RESHAPES):
            break
    first = next((c for c in trace.calls if not isinstance(c.module, RESHAPES)), trace.calls[-1])
    raise UnsupportedModelError(
        f"{method}: the {rule} rule belongs to the input layer, a Conv2d or Linear layer that only reshapes "
        f"may precede; the first layer here is module '{first.name}' ({type(first.module).__name__})."
    )


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"Parameter '{name}' must be positive; got {value}.")
    return value


class _LRP(CaptumExplainer):
    """Captum `LRP` on a canonical copy whose layer calls were traced (functional operations refused) and
    whose layers carry the rules that `attach` gives them."""

    captum_class = "LRP"
    canonical = True

    def attach(self, model: nn.Module, clone: nn.Module, trace: LayerTrace) -> None:
        raise NotImplementedError

    def attribution_model(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
        method = type(self).__name__
        self.check_params()
        clone = super().attribution_model(model, inputs)
        check_lrp_layers(clone, method)
        trace = trace_layers(clone, inputs[:1], method=method)
        self.attach(model, clone, trace)
        return clone

    def check_params(self) -> None:
        pass


class LRPEpsilon(_LRP):
    """LRP-ε (Bach et al. 2015): relevance R_j = Σ_k a_j w_jk R_k / (z_k + ε·sign(z_k)), starting from the
    target logit (Captum `LRP`).

    ε applies to Conv2d and Linear layers (SMERF: ε = 1); pooling, BatchNorm2d, Flatten and Identity use
    the z-rule; ReLU and Dropout pass relevance through. Other layer types, and functional operations in
    `forward` (residual additions, F.relu), raise an error naming the layer.
    """

    parameters = (Param("epsilon", 1.0, "stabiliser in the Conv2d/Linear denominators (SMERF: 1)", float),)

    def check_params(self) -> None:
        _positive("epsilon", self.params["epsilon"])

    def attach(self, model: nn.Module, clone: nn.Module, trace: LayerTrace) -> None:
        attach_lrp_rules(clone, self.params["epsilon"], type(self).__name__)


class LRPZ(_LRP):
    """LRP-z (Bach et al. 2015): R_j = Σ_k a_j w_jk R_k / z_k with the bias in z_k (innvestigate `lrp.z`,
    SMERF "LRP-Z"); LRP-ε with ε = 1e-9 (a guard against 0/0) on every layer. Layers as LRP-ε."""

    def attach(self, model: nn.Module, clone: nn.Module, trace: LayerTrace) -> None:
        attach_lrp_rules(clone, Z_RULE_EPSILON, type(self).__name__)


def default_rules(model: nn.Module, weight_rule: Callable[[nn.Module], PropagationRule]) -> None:
    """`weight_rule(layer)` on Conv2d/Linear, the z-rule on pooling and BatchNorm2d, relevance unchanged
    through Flatten/Identity (ReLU and Dropout pass it through without a rule)."""
    for module in model.modules():
        if isinstance(module, LRP_EPSILON_LAYERS):
            module.rule = weight_rule(module)
        elif isinstance(module, nn.Flatten | nn.Identity):
            module.rule = GradientRule()
        elif isinstance(module, LRP_Z_LAYERS):
            module.rule = EpsilonRule(Z_RULE_EPSILON)


class _LRPPresetFlat(_LRP):
    """innvestigate's `LRPSequentialPreset{A,B}Flat`: ε on Linear, α-β on Conv2d, flat on the input layer."""

    alpha: ClassVar[float]
    beta: ClassVar[float]
    parameters = (
        Param("epsilon", 1.0, "ε of the Linear layers (SMERF: 1; innvestigate's default 0.1)", float),
    )

    def check_params(self) -> None:
        _positive("epsilon", self.params["epsilon"])

    def attach(self, model: nn.Module, clone: nn.Module, trace: LayerTrace) -> None:
        def weight_rule(layer: nn.Module) -> PropagationRule:
            if isinstance(layer, nn.Conv2d):
                return AlphaBetaRule(self.alpha, self.beta)
            return EpsilonRule(self.params["epsilon"])

        default_rules(clone, weight_rule)
        input_layer(trace, type(self).__name__, "flat").module.rule = FlatRule()


class LRPAlpha1Beta0Flat(_LRPPresetFlat):
    """LRP preset A-flat (SMERF "LRP-PresetAFlat", innvestigate `lrp.sequential_preset_a_flat`): ε rule on
    Linear layers, α1β0 on Conv2d layers (bias in the denominator, as innvestigate), flat rule on the input
    layer; pooling/BatchNorm2d use the z-rule. Defaults: ε = 1 (SMERF)."""

    alpha, beta = 1.0, 0.0


class LRPAlpha2Beta1Flat(_LRPPresetFlat):
    """LRP preset B-flat (SMERF "LRP-PresetBFlat", innvestigate `lrp.sequential_preset_b_flat`): as A-flat
    with α2β1 on Conv2d layers, R_i = Σ_j (2 z⁺_ij / z⁺_j − z⁻_ij / z⁻_j) R_j. Defaults: ε = 1 (SMERF)."""

    alpha, beta = 2.0, 1.0


class DeepTaylor(_LRP):
    """Deep Taylor decomposition, bounded (Montavon et al. 2017), as innvestigate `deep_taylor.bounded`
    (SMERF "DeepTaylor", low=0, high=1): z^B rule on the input layer with the bounds of the model's input
    range, z⁺ on the other Conv2d/Linear layers, w² on the output layer (innvestigate's rule for a layer
    without ReLU; `output_rule=zplus` for z⁺), relevance along the gradient through pooling (winner takes
    all / even split), z-rule through BatchNorm2d. It explains ReLU(logit): a sample whose target logit is
    ≤ 0 gets a zero map. Bounds default to `ModelInfo.input_range` ([0, 1] unless the model says otherwise).
    """

    parameters = (
        Param("low", None, "lowest input value for the z^B rule (default: the model's input range)", float),
        Param("high", None, "highest input value for the z^B rule (default: the model's input range)", float),
        Param("output_rule", "wsquare", "the output layer's rule (innvestigate)", str, ("wsquare", "zplus")),
    )

    def bounds(self, model: nn.Module) -> tuple[float, float]:
        low, high = model_info(model).input_range
        low = low if self.params["low"] is None else self.params["low"]
        high = high if self.params["high"] is None else self.params["high"]
        if not low < high:
            raise ValueError(f"Parameters 'low' < 'high' required; got low={low}, high={high}.")
        return float(low), float(high)

    def attach(self, model: nn.Module, clone: nn.Module, trace: LayerTrace) -> None:
        method = type(self).__name__
        default_rules(clone, lambda m: AlphaBetaRule(1.0, 0.0, bias=False))
        for module in clone.modules():
            if isinstance(module, POOLS):
                module.rule = GradientRule()
        kernel = [i for i, c in enumerate(trace.calls) if isinstance(c.module, LRP_EPSILON_LAYERS)]
        last = kernel[-1] if kernel else None
        relu_after = last is not None and any(isinstance(c.module, nn.ReLU) for c in trace.calls[last + 1 :])
        if last is not None and self.params["output_rule"] == "wsquare" and not relu_after:
            trace.calls[last].module.rule = WSquareRule()
        input_layer(trace, method, "z^B").module.rule = BoundedRule(*self.bounds(model))

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        inputs, targets = checked_batch(model, inputs, targets)
        clone = self.attribution_model(model, inputs)
        with torch.no_grad():
            switched_on = clone(inputs).gather(1, targets[:, None]).view(-1, *([1] * (inputs.dim() - 1))) > 0
        inputs.requires_grad_(True)
        with quiet_captum():
            attributions = captum_attr.LRP(clone).attribute(inputs, target=targets)
        return attributions * switched_on


# ---------------------------------------------------------------------------------------------------------
# DeepLIFT RevealCancel

REVEAL_CANCEL_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Tanh, nn.Sigmoid)
REVEAL_CANCEL_LINEAR = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)
Linear = Callable[[torch.Tensor], torch.Tensor]


def layer_chain(model: nn.Module, probe: torch.Tensor, *, method: str) -> list[LayerCall]:
    """The layer calls of `model`, checked to form one chain: each layer takes the previous one's output (or
    an order-preserving reshape of it) and the last computes the output; supported types and modes only."""
    trace = trace_layers(model, probe, method=method)
    calls = trace.calls
    known = ", ".join(t.__name__ for t in (*REVEAL_CANCEL_LINEAR, *REVEAL_CANCEL_ACTIVATIONS))
    for k, call in enumerate(calls):
        where = f"module '{call.name}' ({type(call.module).__name__})"
        if call.source != k - 1 or not call.in_order or call.input_shape[:1] != (1,):
            expected = "the model input" if k == 0 else f"the output of module '{calls[k - 1].name}'"
            raise UnsupportedModelError(
                f"{method} runs the layers one after another (an nn.Sequential-like chain); {where} does "
                f"not take {expected} (or a reshape of it that keeps the batch and the order)."
            )
        if not isinstance(call.module, REVEAL_CANCEL_LINEAR + REVEAL_CANCEL_ACTIVATIONS):
            raise UnsupportedModelError(f"{method}: {where} has no DeepLIFT rule; supported layers: {known}.")
        module = call.module
        batch_stats = isinstance(module, nn.BatchNorm2d) and (module.training or module.running_var is None)
        if batch_stats or (isinstance(module, nn.Dropout) and module.training and module.p > 0):
            raise UnsupportedModelError(f"{method}: {where} is in training mode; call model.eval() first.")
    if trace.output_source != len(calls) - 1 or not trace.output_in_order:
        raise UnsupportedModelError(f"{method}: the model's output is not the output of its last layer.")
    return calls


def linear_parts(module: nn.Module, a: torch.Tensor, r: torch.Tensor) -> tuple[Linear, Linear | None]:
    """The bias-free linear map of a layer at input `a` (reference `r`), split into its positive- and
    negative-weight parts P and N (N is None where all weights are ≥ 0). Max pooling is linearised as
    λ·Δx[argmax x] + (1−λ)·Δx[argmax x₀], λ ∈ [0, 1] chosen so that it equals max(x) − max(x₀) exactly."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        w = module.weight.detach()
        if isinstance(module, nn.Conv2d):
            return (lambda v: module._conv_forward(v, w.clamp(min=0), None)), (
                lambda v: module._conv_forward(v, w.clamp(max=0), None)
            )
        return (lambda v: F.linear(v, w.clamp(min=0))), (lambda v: F.linear(v, w.clamp(max=0)))
    if isinstance(module, nn.BatchNorm2d):
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        scale = scale.view(1, -1, 1, 1)
        return (lambda v: v * scale.clamp(min=0)), (lambda v: v * scale.clamp(max=0))
    if isinstance(module, nn.MaxPool2d | nn.AdaptiveMaxPool2d):
        return _max_pool_pair(module, a, r), None
    return module, None  # average pooling, Flatten, Identity, Dropout in eval mode


def _max_pool_pair(module: nn.Module, a: torch.Tensor, r: torch.Tensor) -> Linear:
    def pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(module, nn.AdaptiveMaxPool2d):
            return F.adaptive_max_pool2d(x, module.output_size, return_indices=True)
        return F.max_pool2d(
            x, module.kernel_size, module.stride, module.padding, module.dilation,
            ceil_mode=module.ceil_mode, return_indices=True,
        )  # fmt: skip

    def pick(v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return v.flatten(2).gather(2, index.flatten(2)).view_as(index)

    (y_a, at_a), (y_r, at_r) = pool(a), pool(r)
    delta = a - r
    d_a, d_r = pick(delta, at_a), pick(delta, at_r)  # d_a ≥ max(x) − max(x₀) ≥ d_r
    spread = d_a - d_r
    share = ((y_a - y_r - d_r) / torch.where(spread > 0, spread, torch.ones_like(spread))).clamp(0, 1)
    share = torch.where(spread > 0, share, torch.ones_like(share))
    return lambda v: share * pick(v, at_a) + (1 - share) * pick(v, at_r)


def _split(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return delta.clamp(min=0), delta.clamp(max=0)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den, and 0 where den = 0."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def _linear_multipliers(
    parts: tuple[Linear, Linear | None], delta: torch.Tensor, m_pos: torch.Tensor, m_neg: torch.Tensor
) -> torch.Tensor:
    """Input multipliers of a linear layer (DeepLIFT's linear rule with positive/negative parts): an input
    with Δx > 0 reaches Δy⁺ through P and Δy⁻ through N, one with Δx < 0 the other way round, and one with
    Δx = 0 takes half of each (as kundajelab's deeplift)."""
    pos_map, neg_map = parts
    pos, neg = (delta > 0).to(delta.dtype), (delta < 0).to(delta.dtype)
    zero = 1 - pos - neg

    def full(v: torch.Tensor) -> torch.Tensor:
        return pos_map(v) if neg_map is None else pos_map(v) + neg_map(v)

    with torch.enable_grad():
        u = torch.zeros_like(delta, requires_grad=True)
        half = 0.5 * full(zero * u)
        y_pos, y_neg = pos_map(pos * u) + half, pos_map(neg * u) + half
        if neg_map is not None:
            y_pos, y_neg = y_pos + neg_map(neg * u), y_neg + neg_map(pos * u)
        (multipliers,) = torch.autograd.grad((y_pos * m_pos).sum() + (y_neg * m_neg).sum(), u)
    return multipliers


class DeepLiftRevealCancel(Explainer):
    """DeepLIFT with the RevealCancel rule (Shrikumar et al. 2017, §3.5.3), zero (black) reference; ours
    (Captum has Rescale only). SMERF "DL-RC" ran kundajelab deeplift's `reveal_cancel` mode.

    Every neuron's difference from reference Δx is split into positive and negative parts Δx⁺, Δx⁻ (sums of
    the positive / negative terms w·Δx of the layer below, as deeplift's linear rule). Each activation f
    (ReLU, LeakyReLU, ELU, Softplus, Tanh, Sigmoid) maps them to
    Δy⁺ = ½(f(x₀+Δx⁺) − f(x₀)) + ½(f(x₀+Δx⁻+Δx⁺) − f(x₀+Δx⁻)) and Δy⁻ likewise, with multipliers Δy±/Δx±.
    Attributions sum to f(x) − f(0) exactly (up to rounding). For `nn.Sequential`-like chains of Conv2d,
    Linear, BatchNorm2d (eval), pooling, Flatten, Identity, Dropout (eval) and those activations; anything
    else raises `UnsupportedModelError` naming the layer. Max pooling uses a conserving rule that equals
    deeplift's gradient rule wherever the reference is constant over the window.
    """

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        method = type(self).__name__
        inputs, targets = checked_batch(model, inputs, targets)
        clone = canonical_copy(model, inputs, method=method)
        calls = layer_chain(clone, inputs[:1], method=method)
        with torch.no_grad():
            steps, last = self._forward(calls, inputs)
            logits = clone(inputs)  # the chain's last output, or a view of it (trace_layers checked)
        same = last.numel() == logits.numel() and torch.allclose(
            last.reshape(logits.shape), logits, 1e-4, 1e-5
        )
        if not same or logits.dim() != 2:
            raise UnsupportedModelError(f"{method}: the model's forward is not the chain of its layers.")
        if targets.numel() and int(targets.max()) >= logits.shape[1]:
            raise ValueError(f"Targets must lie in [0, {logits.shape[1]}); got {targets.tolist()}.")
        m_pos = m_neg = F.one_hot(targets, logits.shape[1]).to(inputs.dtype).reshape(last.shape)
        for shape, ratios, parts, delta in reversed(steps):
            if ratios is not None:
                m_pos, m_neg = m_pos * ratios[0], m_neg * ratios[1]
            else:
                m_pos = m_neg = _linear_multipliers(parts, delta, m_pos, m_neg)
            m_pos, m_neg = m_pos.reshape(shape), m_neg.reshape(shape)
        x_pos, x_neg = _split(inputs)
        return m_pos * x_pos + m_neg * x_neg

    @staticmethod
    def _forward(calls: list[LayerCall], inputs: torch.Tensor) -> tuple[list[Any], torch.Tensor]:
        """Activations a (input) and r (reference) and the split Δ = p + n through the chain; per layer the
        shape before it and either the activation's multiplier ratios or the linear layer's parts and Δ."""
        a, r = inputs, torch.zeros_like(inputs)
        p, n = _split(a - r)
        steps: list[Any] = []
        for call in calls:
            module, shape = call.module, a.shape
            a, r, p, n = (t.reshape(a.shape[0], *call.input_shape[1:]) for t in (a, r, p, n))
            if isinstance(module, REVEAL_CANCEL_ACTIVATIONS):
                f_r, f_p, f_n, f_pn = module(r), module(r + p), module(r + n), module(r + p + n)
                p_out = 0.5 * (f_p - f_r) + 0.5 * (f_pn - f_n)
                n_out = 0.5 * (f_n - f_r) + 0.5 * (f_pn - f_p)
                steps.append((shape, (_ratio(p_out, p), _ratio(n_out, n)), None, None))
                a, r, p, n = module(a), f_r, p_out, n_out
            else:
                parts = linear_parts(module, a, r)
                delta = a - r
                d_pos, d_neg = _split(delta)
                p_out, n_out = parts[0](d_pos), parts[0](d_neg)
                if parts[1] is not None:
                    p_out, n_out = p_out + parts[1](d_neg), n_out + parts[1](d_pos)
                steps.append((shape, None, parts, delta))
                a, r, p, n = module(a), module(r), p_out, n_out
        return steps, a
