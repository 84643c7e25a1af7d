"""Relevance-propagation explainers: DeepLIFT (Rescale by Captum, RevealCancel ours) and the LRP family
(our engine in `relevance` with the rules of `lrp_rules`), all on `canonical_copy(model)`.

The LRP family runs on any model whose layer modules it has rules for: residual additions, `torch.cat`,
`F.relu` and other piecewise-linear code in `forward` get the z-rule (see `relevance`). RevealCancel runs
layer by layer, so a probe pass (`trace_layers`) checks that the layers form one chain and refuses
anything computed outside layer modules with the name of the layer it feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from attribench_core import Explainer, Normalize, Param, ParameterError, model_info
from attribench_methods.common import CaptumExplainer, checked_batch
from attribench_methods.lrp_rules import (
    AlphaBetaRule,
    BoundedRule,
    EpsilonRule,
    FlatRule,
    GateRule,
    GradientRule,
    PassRule,
    RelevanceRule,
    WSquareRule,
)
from attribench_methods.model_checks import UnsupportedModelError, canonical_copy, deeplift_model
from attribench_methods.relevance import (
    GATES,
    LayerCall,
    LayerTrace,
    fold_batch_norms,
    propagate_relevance,
    trace_layers,
)
from attribench_methods.summation import (
    ProductRule,
    deeplift_nonlinearities,
    record_summation_gap,
    refuse_undefined,
)

# Layers the ε rule applies to, layers propagated with the plain z-rule (ε ≈ 0: they are parameter-free or
# per-channel affine, and an ε there would only absorb relevance), and layers relevance passes through
# (activations: ReLU, and SiLU/GELU by AttnLRP's identity rule; the input normalisation, an elementwise
# map, so a pixel keeps its relevance). Gates (Sigmoid) take none (`GateRule`).
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
LRP_PASS_THROUGH = (nn.ReLU, nn.Dropout, Normalize, nn.SiLU, nn.GELU, *GATES)
LRP_RULE_LAYERS = (*LRP_EPSILON_LAYERS, *LRP_Z_LAYERS)
Z_RULE_EPSILON = 1e-9
Z_RULE = EpsilonRule(Z_RULE_EPSILON)
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
# LRP


def in_training_mode(module: nn.Module) -> bool:
    """A BatchNorm2d that normalises with batch statistics, or an active Dropout: samples would interact."""
    batch_stats = isinstance(module, nn.BatchNorm2d) and (module.training or module.running_var is None)
    return batch_stats or (isinstance(module, nn.Dropout) and module.training and module.p > 0)


def check_lrp_layers(model: nn.Module, trace: LayerTrace, method: str) -> None:
    """Raise naming the first module that LRP cannot propagate through: an unknown layer type (LayerNorm,
    attention, Tanh, ...: LRP is defined here for ReLU networks) unless the probe pass did not call it or
    it is parameter-free and returned its input itself (stochastic depth in eval mode); a container that
    uses parameters of its own; a model that is one single module; code in forward that is not piecewise
    linear; BatchNorm or Dropout in training mode; a `Normalize` inside the network; a gate whose output is
    not only a factor of a product."""
    known = ", ".join(t.__name__ for t in (*LRP_EPSILON_LAYERS, *LRP_Z_LAYERS, *LRP_PASS_THROUGH))
    identities = {c.module for c in trace.calls if c.returns_input} - {
        c.module for c in trace.calls if not c.returns_input
    }
    for path, module in model.named_modules():
        where = f"{'module ' + repr(path) if path else 'the model'} ({type(module).__name__})"
        if next(module.children(), None) is not None:
            own = [name for name, _ in module.named_parameters(recurse=False)]
            if own:
                raise UnsupportedModelError(
                    f"{method}: {where} uses its own parameters {own} outside of layers; LRP can only "
                    "propagate through layer modules (explain this model with a gradient, IG or perturbation "
                    "method instead)."
                )
        elif module is model:
            raise UnsupportedModelError(f"{method}: {where} has no layer modules to propagate through.")
        elif not isinstance(module, LRP_RULE_LAYERS) and type(module) not in LRP_PASS_THROUGH:
            unused = all(c.module is not module for c in trace.calls)
            if unused or (module in identities and next(module.parameters(), None) is None):
                continue
            raise UnsupportedModelError(
                f"{method}: {where} has no LRP rule; LRP is defined here for ReLU networks of {known} "
                "(explain this model with a gradient, IG or perturbation method instead)."
            )
    if trace.nonlinear:
        raise UnsupportedModelError(
            f"{method}: forward computes {', '.join(trace.nonlinear)} outside layer modules, which LRP has "
            "no rule for (it is defined here for ReLU networks; explain this model with a gradient, IG or "
            "perturbation method instead)."
        )
    for call in trace.calls:
        where = f"module '{call.name}' ({type(call.module).__name__})"
        if in_training_mode(call.module):
            raise UnsupportedModelError(f"{method}: {where} is in training mode; call model.eval() first.")
        if isinstance(call.module, Normalize) and call.source != -1:
            raise UnsupportedModelError(
                f"{method}: {where} does not take the model input; only input normalisation is supported."
            )
    gates = {k: f"module '{c.name}' ({type(c.module).__name__})" for k, c in enumerate(trace.calls)
             if isinstance(c.module, GATES)}  # fmt: skip
    only_as_gate = "which LRP supports only as a multiplicative gate x * σ(g)"
    for call in trace.calls:
        if call.source in gates:
            raise UnsupportedModelError(
                f"{method}: module '{call.name}' takes the output of {gates[call.source]}, {only_as_gate}."
            )
    if trace.output_source in gates:
        raise UnsupportedModelError(
            f"{method}: the model returns the output of {gates[trace.output_source]}, {only_as_gate}."
        )


def find_input_layer(trace: LayerTrace) -> int | None:
    """Index of the input layer's call: the first Conv2d/Linear call, fed by the model input through
    reshapes and an input `Normalize` only (views that keep the order); None if there is none."""
    for index, call in enumerate(trace.calls):
        if call.source is None or not call.in_order:
            return None
        if isinstance(call.module, LRP_EPSILON_LAYERS):
            return index
        if not isinstance(call.module, (*RESHAPES, Normalize)):
            return None
    return None


def input_layer(trace: LayerTrace, method: str, rule: str) -> int:
    """`find_input_layer`, or `UnsupportedModelError` naming the first layer for an input-layer `rule`."""
    index = find_input_layer(trace)
    if index is not None:
        return index
    first = next((c for c in trace.calls if not isinstance(c.module, RESHAPES)), trace.calls[-1])
    computed = f" (its input {first.computed_by})" if first.source is None else ""
    raise UnsupportedModelError(
        f"{method}: the {rule} rule belongs to the input layer, a Conv2d or Linear layer that only reshapes "
        f"and an input Normalize may precede; the first layer here is module '{first.name}' "
        f"({type(first.module).__name__}){computed}. A model that normalises its input in forward: wrap it "
        "as Normalized(Normalize(mean, std), network) (--normalize)."
    )


def input_values(trace: LayerTrace, index: int, value: float) -> torch.Tensor | float:
    """What the input layer (call `index`) sees where every input pixel is `value`: `value` itself, or,
    behind an input `Normalize`, the normalised constant image (per channel), shaped like its input."""
    normalize = next((c for c in trace.calls[:index] if isinstance(c.module, Normalize)), None)
    if normalize is None:
        return value
    mean = normalize.module.mean
    with torch.no_grad():
        image = normalize.module(
            torch.full((1, *normalize.input_shape[1:]), value, dtype=mean.dtype, device=mean.device)
        )
    return image.reshape(1, *trace.calls[index].input_shape[1:])


class _LRP(Explainer):
    """LRP on a canonical copy (BatchNorm folded into its convolution), traced once on the first image,
    with a rule for every layer call given by `rules` (see `relevance` for the engine)."""

    def rules(self, model: nn.Module, trace: LayerTrace) -> dict[nn.Module, RelevanceRule]:
        """The rule of every layer module of the traced canonical copy."""
        raise NotImplementedError

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.propagate(model, inputs, targets)[0]

    def propagate(
        self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input relevance and the target logits."""
        method = type(self).__name__
        inputs, targets = checked_batch(model, inputs, targets)
        clone, trace = lrp_model(model, inputs, method=method)
        rules = self.rules(model, trace)
        return propagate_relevance(clone, inputs, targets, trace, rules, method=method)


def lrp_model(model: nn.Module, inputs: torch.Tensor, *, method: str) -> tuple[nn.Module, LayerTrace]:
    """`canonical_copy(model)` with its BatchNorm2d layers folded into their convolutions where that gives
    the same logits on the first image, and its trace."""

    def copy_of_model() -> nn.Module:
        clone = canonical_copy(model, inputs, method=method)
        return clone.requires_grad_(False)  # the rules need gradients with respect to activations only

    probe = inputs[:1]
    clone = copy_of_model()
    trace = trace_layers(clone, probe, method=method)
    check_lrp_layers(clone, trace, method)
    with torch.no_grad():
        logits = clone(probe)
    if fold_batch_norms(clone, trace):
        with torch.no_grad():
            same = torch.allclose(clone(probe), logits, rtol=1e-4, atol=1e-5)
        clone = clone if same else copy_of_model()  # a convolution's output also used elsewhere: unfolded
        trace = trace_layers(clone, probe, method=method)
    return clone, trace


def layer_rules(
    trace: LayerTrace, weight_rule: Callable[[nn.Module], RelevanceRule], *, pool_rule: RelevanceRule
) -> dict[nn.Module, RelevanceRule]:
    """`weight_rule(layer)` on Conv2d/Linear, `pool_rule` on pooling, the z-rule on BatchNorm2d,
    relevance unchanged through Flatten/Identity, activations, Dropout and the input Normalize, none into
    gates."""
    rules: dict[nn.Module, RelevanceRule] = {}
    for call in trace.calls:
        module = call.module
        if isinstance(module, LRP_EPSILON_LAYERS):
            rules[module] = weight_rule(module)
        elif isinstance(module, POOLS):
            rules[module] = pool_rule
        elif isinstance(module, nn.Flatten | nn.Identity):
            rules[module] = GradientRule()
        elif isinstance(module, nn.BatchNorm2d):
            rules[module] = Z_RULE
        elif isinstance(module, GATES):
            rules[module] = GateRule()
        else:
            rules[module] = PassRule()
    return rules


def epsilon_rules(
    trace: LayerTrace, epsilon: float, *, relative: bool = False
) -> dict[nn.Module, RelevanceRule]:
    """The ε rule on Conv2d/Linear, the z-rule on pooling, BatchNorm2d, Flatten and Identity. Behind an input
    `Normalize`, the input layer measures its input from the normalised black image: its rule is then the ε
    rule of the layer with the normalisation folded in, on [0, 1] images."""
    rules = layer_rules(trace, lambda m: EpsilonRule(epsilon, relative=relative), pool_rule=Z_RULE)
    for call in trace.calls:
        if isinstance(call.module, nn.Flatten | nn.Identity):
            rules[call.module] = Z_RULE
    index = find_input_layer(trace)
    if index is not None and any(isinstance(c.module, Normalize) for c in trace.calls[:index]):
        black = input_values(trace, index, 0.0)
        rules[trace.calls[index].module] = EpsilonRule(epsilon, relative=relative, reference=black)
    else:  # the z-rule through the normalisation is the same folding, read from the rate R/a
        rules.update({c.module: Z_RULE for c in trace.calls if isinstance(c.module, Normalize)})
    return rules


class LRPEpsilon(_LRP):
    """LRP-ε (Bach et al. 2015): relevance R_j = Σ_k a_j w_jk R_k / (z_k + ε·sign(z_k)), starting from the
    target logit.

    ε applies to Conv2d and Linear layers. By default it is relative to each layer: ε = `relative_epsilon`
    × the root mean square of the layer's outputs z, per sample (the relative ε of the LRP tutorial,
    0.25·RMS(z), Montavon et al. 2019, with a far smaller factor), so that it guards the near-zero
    denominators whatever the scale of the activations without absorbing the relevance. With zero biases,
    seeded weights, 64 px and the predicted class, the share of the target logit absorbed on a VGG-11-BN
    (width 64) / a ResNet-18 (width 64) is: ε = 1 absolute 100 % / 99.99 %; 0.25·RMS 81–85 % / ≈ 79 %;
    1e-3·RMS 0.5–0.9 % / 0.7–0.8 %; 1e-4·RMS (the default) under 0.1 % on both. The absorbed share grows
    with the number of layers (about 0.07 % per layer at 1e-3), hence the default's margin. An
    explicit `epsilon` is absolute (SMERF: ε = 1). Pooling, BatchNorm2d (folded into its convolution when it
    directly follows one), Flatten and Identity use the z-rule; ReLU and Dropout pass relevance through;
    additions and other piecewise-linear code in `forward` split it by the z-rule (see `relevance`). Other
    layer types raise an error naming the layer.
    """

    parameters = (
        Param(
            "epsilon",
            None,
            "absolute ε of the Conv2d/Linear denominators (SMERF: 1); overrides relative_epsilon",
            float,
            greater_than=0,
        ),
        Param(
            "relative_epsilon",
            1e-4,
            "ε as a multiple of the RMS of each layer's outputs, per sample",
            float,
            greater_than=0,
        ),
    )

    def rules(self, model: nn.Module, trace: LayerTrace) -> dict[nn.Module, RelevanceRule]:
        if self.params["epsilon"] is not None:
            return epsilon_rules(trace, self.params["epsilon"])
        return epsilon_rules(trace, self.params["relative_epsilon"], relative=True)


class LRPZ(_LRP):
    """LRP-z (Bach et al. 2015): R_j = Σ_k a_j w_jk R_k / z_k with the bias in z_k (innvestigate `lrp.z`,
    SMERF "LRP-Z"); LRP-ε with ε = 1e-9 (a guard against 0/0) on every layer. Layers as LRP-ε."""

    def rules(self, model: nn.Module, trace: LayerTrace) -> dict[nn.Module, RelevanceRule]:
        return epsilon_rules(trace, Z_RULE_EPSILON)


class _LRPPresetFlat(_LRP):
    """innvestigate's `LRPSequentialPreset{A,B}Flat`: ε on Linear, α-β on Conv2d, flat on the input layer."""

    alpha: ClassVar[float]
    beta: ClassVar[float]
    parameters = (
        Param(
            "epsilon",
            1.0,
            "ε of the Linear layers (SMERF: 1; innvestigate's default 0.1)",
            float,
            greater_than=0,
        ),
    )

    def rules(self, model: nn.Module, trace: LayerTrace) -> dict[nn.Module, RelevanceRule]:
        def weight_rule(layer: nn.Module) -> RelevanceRule:
            if isinstance(layer, nn.Conv2d):
                return AlphaBetaRule(self.alpha, self.beta)
            return EpsilonRule(self.params["epsilon"])

        rules = layer_rules(trace, weight_rule, pool_rule=Z_RULE)
        rules[trace.calls[input_layer(trace, type(self).__name__, "flat")].module] = FlatRule()
        return rules


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
    all / even split), z-rule through BatchNorm2d (folded into its convolution when it directly follows
    one). It explains ReLU(logit): a sample whose target logit is ≤ 0 gets a zero map. Bounds default to
    `ModelInfo.input_range` ([0, 1] unless the model says otherwise); behind an input `Normalize` they are
    normalised per channel, which is z^B on the input layer with the normalisation folded in.
    """

    parameters = (
        Param("low", None, "lowest input value for the z^B rule (default: the model's input range)", float),
        Param("high", None, "highest input value for the z^B rule (default: the model's input range)", float),
        Param("output_rule", "wsquare", "the output layer's rule (innvestigate)", str, ("wsquare", "zplus")),
    )

    def check_params(self) -> None:
        low, high = self.params["low"], self.params["high"]
        if low is not None and high is not None and not low < high:
            raise ParameterError(f"Parameters 'low' < 'high' required; got low={low}, high={high}.")

    def bounds(self, model: nn.Module) -> tuple[float, float]:
        low, high = model_info(model).input_range
        low = low if self.params["low"] is None else self.params["low"]
        high = high if self.params["high"] is None else self.params["high"]
        if not low < high:
            raise ValueError(
                f"Parameters 'low' < 'high' required (the model's input range gives the one not set); "
                f"got low={low}, high={high}."
            )
        return float(low), float(high)

    def rules(self, model: nn.Module, trace: LayerTrace) -> dict[nn.Module, RelevanceRule]:
        rules = layer_rules(trace, lambda m: AlphaBetaRule(1.0, 0.0, bias=False), pool_rule=GradientRule())
        kernel = [i for i, c in enumerate(trace.calls) if isinstance(c.module, LRP_EPSILON_LAYERS)]
        last = kernel[-1] if kernel else None
        relu_after = last is not None and any(isinstance(c.module, nn.ReLU) for c in trace.calls[last + 1 :])
        if last is not None and self.params["output_rule"] == "wsquare" and not relu_after:
            rules[trace.calls[last].module] = WSquareRule()
        index = input_layer(trace, type(self).__name__, "z^B")
        low, high = (input_values(trace, index, bound) for bound in self.bounds(model))
        rules[trace.calls[index].module] = BoundedRule(low, high)
        return rules

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        relevance, logits = self.propagate(model, inputs, targets)
        return relevance * (logits > 0).view(-1, *([1] * (inputs.dim() - 1)))


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
    why = (
        f"{method} propagates relevance through layer modules only, so such an operation would silently "
        "give wrong maps. Supported: layer modules called one after another, with reshapes (view, "
        "flatten) between them; `deeplift` (Rescale) and the LRP family run on such models."
    )
    for call in calls:
        if call.source is None:
            where = f"module '{call.name}' ({type(call.module).__name__})"
            raise UnsupportedModelError(
                f"{method}: the input of {where} {call.computed_by}{_example(call)}. {why}"
            )
    if trace.output_source is None:
        raise UnsupportedModelError(
            f"{method}: the model's output {trace.output_computed_by}{_example()}. {why}"
        )
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
        if in_training_mode(call.module):
            raise UnsupportedModelError(f"{method}: {where} is in training mode; call model.eval() first.")
    if trace.output_source != len(calls) - 1 or not trace.output_in_order:
        raise UnsupportedModelError(f"{method}: the model's output is not the output of its last layer.")
    return calls


def _example(call: LayerCall | None = None) -> str:
    """What typically computes a layer input outside layers, for a refusal."""
    if call is not None and call.computed_by.startswith("is changed in place"):
        return " (e.g. `out += identity`, `x.relu_()`)"
    return " (a residual addition, torch.cat, F.relu or another operation in forward)"


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
