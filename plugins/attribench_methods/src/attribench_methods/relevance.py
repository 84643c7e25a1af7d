"""Relevance propagation through any eager PyTorch model: which layer call feeds which (one probe pass),
BatchNorm folded into the preceding convolution, and the engine that runs the LRP rules.

The engine mixes two formulations so that it needs neither a `nn.Sequential` chain nor a rewrite of
`forward`:

- Between layer calls that feed each other directly (a layer's input is another layer's output or a view
  of it), relevance R itself flows backwards and each call's rule maps the relevance of its output to that
  of its input (`lrp_rules`). This is innvestigate's and Captum's formulation; SMERF's reproduction depends
  on it (Deep Taylor's w² rule and pooling along the gradient put relevance on inactive units, which must
  travel on).
- Through everything computed in `forward` outside layer modules (residual `x + f(x)` or `out += identity`,
  `torch.cat`, `F.relu`, slicing, scaling) flows the relevance per unit of activation c = R / a instead:
  there the plain gradient of c is the z-rule (Bach et al. 2015) of every piecewise-linear operation, so
  an addition splits relevance in proportion to its addends, a concatenation routes it, a ReLU passes it
  (Ancona et al. 2018: z-rule LRP is gradient × input on such operations). A layer output that feeds such
  code turns c back into R = a ⊙ c; a layer input computed by it turns R into c = R / a.

Other operations in `forward` (a product of two computed tensors such as attention, softmax, GELU, exp,
layer norm) have no such reading: the probe pass lists them (`LayerTrace.nonlinear`), and the explainers
refuse them by name, as they refuse layer modules they have no rule for. The one product allowed is a
signal times the output of a gate layer (`GATES`, `x * sigmoid(g)`): the gate's rule sends no relevance
into its branch, so the signal takes all (Arras et al. 2017).

Why not Captum's `LRP`: it passes R itself through code in `forward`, so an addition hands the full
relevance to both addends. Why not Zennit, whose rules ours follow: it cannot be imported beside a CPU-only
torch (it imports torchvision), it too passes R through additions unless a canonizer rewrites the model's
`forward` (its ResNet canonizer replaces torchvision's `BasicBlock.forward`), which a user's own model does
not have, and SMERF's reproduction needs innvestigate's rules exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from attribench_methods.lrp_rules import RelevanceRule
from attribench_methods.model_checks import PerCall, UnsupportedModelError


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer (leaf) module in the probe pass."""

    name: str  # its path in the model; "(call k)" added for a module that one forward runs several times
    module: nn.Module
    source: int | None  # the call whose output feeds it (itself or a view); -1: the model input; None: other
    in_order: bool  # the input holds the source's elements in the source's order (not a transpose)
    input_shape: tuple[int, ...]  # for the probe's batch of one
    computed_by: str = ""  # why `source` is None: how the input was computed
    returns_input: bool = False  # the call returned its input tensor itself (an identity in this mode)


@dataclass(frozen=True)
class LayerTrace:
    calls: list[LayerCall]
    output_source: int | None  # the call whose output (or a view of it) the model returns; None: other
    output_in_order: bool
    output_computed_by: str = ""
    nonlinear: tuple[str, ...] = ()  # operations in forward, outside layers, that are not piecewise linear


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


def single_tensor(
    module: nn.Module, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], method: str
) -> torch.Tensor:
    """The one tensor among a call's arguments, or `UnsupportedModelError` naming the layer."""
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    if len(tensors) != 1:
        raise UnsupportedModelError(
            f"{method}: module '{name}' ({type(module).__name__}) takes {len(tensors)} tensors; "
            "only single-input layers are supported."
        )
    return tensors[0]


# Operations whose z-rule is their gradient: linear or piecewise linear, positively homogeneous up to
# constants (torch function names, in- and out-of-place forms).
# fmt: off
PIECEWISE_LINEAR = frozenset({
    "add", "sub", "neg", "sum", "mean", "cat", "concat", "concatenate", "stack", "hstack", "vstack", "split",
    "chunk", "unbind", "tensor_split", "narrow", "select", "index_select", "gather", "view", "view_as",
    "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "squeeze",
    "unsqueeze", "expand", "expand_as", "repeat", "clone", "detach", "flip", "roll", "pad", "relu",
    "max_pool1d", "max_pool2d", "adaptive_max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "interpolate",
    "dropout", "max", "amax", "min", "amin", "maximum", "minimum", "clamp", "clip", "where", "masked_fill",
    "copy", "to", "type_as", "float", "double", "half", "getitem", "setitem",
})
# fmt: on
# Bilinear operations: linear as long as at most one operand is computed from the input.
PRODUCTS = frozenset(["mul", "div", "truediv", "matmul", "mm", "bmm", "einsum", "linear", "conv1d", "conv2d"])
# Operations whose output does not depend on their operands' values.
CONSTANT_MAKERS = frozenset(
    ["zeros_like", "ones_like", "full_like", "empty_like", "new_zeros", "new_ones", "new_full", "new_empty"]
)


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a torch function's arguments or result (nested tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return _tensors(list(value.values()))
    return []


REFLECTED = frozenset(["add", "sub", "mul", "truediv", "floordiv", "matmul", "pow"])


def _operation_name(func: Callable[..., Any]) -> str:
    """The operation a torch function computes: `__iadd__`, `__radd__`, `add_`, `add` → `add`."""
    name = getattr(func, "__name__", repr(func))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("r", "i") and name[1:] in REFLECTED:
            name = name[1:]
    return name.rstrip("_")


# Layers whose output may only serve as a multiplicative gate `x * σ(g)` (squeeze-excitation): relevance
# then goes to the signal x only (signal-take-all, Arras et al. 2017); see `propagation.GateRule`.
GATES = (nn.Sigmoid,)


class _ForwardCode(TorchFunctionMode):
    """Records the torch operations that `forward` runs outside layer modules on tensors computed from the
    input, and those of them that are not piecewise linear; a gate layer's output may only be reshaped and
    multiply one other computed tensor."""

    def __init__(self, computed: list[torch.Tensor], last_layer: Callable[[], str]) -> None:
        super().__init__()
        self.inside_layer = 0
        self.computed = {id(t) for t in computed}
        self.gates: set[int] = set()
        self.kept = list(computed)  # keeps the ids valid
        self.last_layer = last_layer
        self.nonlinear: list[str] = []

    def mark(self, tensors: list[torch.Tensor], *, gate: bool = False) -> None:
        (self.gates if gate else self.computed).update(id(t) for t in tensors)
        self.kept += tensors

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.inside_layer:
            return out
        operands = _tensors((args, kwargs))
        live = {id(t) for t in operands if id(t) in self.computed}
        gates = {id(t) for t in operands if id(t) in self.gates}
        results = _tensors(out)
        name = _operation_name(func)
        if not (live or gates) or not results or name in CONSTANT_MAKERS:
            return out
        if gates and not live and name in PIECEWISE_LINEAR:  # a reshaped gate
            self.mark(results, gate=True)
            return out
        if gates:
            linear, what = name == "mul" and len(live) == 1, f"a gate layer's output used in {name}"
        else:
            linear = name in PIECEWISE_LINEAR or (name in PRODUCTS and len(live) == 1)
            what = f"{name} of two computed tensors" if name in PRODUCTS else name
        if not linear and not any(seen.startswith(f"{what} (") for seen in self.nonlinear):
            self.nonlinear.append(f"{what} (after {self.last_layer()})")
        self.mark(results)
        return out


def trace_layers(model: nn.Module, probe: torch.Tensor, *, method: str) -> LayerTrace:
    """Run `probe` through `model` once, recording for every layer call which call's output it takes:
    the model input, another call's output or a view of it, or something computed outside layer modules
    (`source` None, with `computed_by` saying how: a residual addition, `torch.cat`, `F.relu`, a tensor
    changed in place after its layer computed it). Raises `UnsupportedModelError` naming the layer when a
    layer takes several tensors, or when the model does not return a tensor. Errors raised by the model's
    forward itself propagate unchanged.
    """
    names = layer_names(model)
    produced: list[tuple[int, torch.Tensor, int]] = [(-1, probe, probe._version)]
    calls: list[LayerCall] = []
    stack: list[int] = []

    def source_of(t: torch.Tensor) -> tuple[int | None, bool, str]:
        for index, ref, version in reversed(produced):
            if _same_elements(t, ref):
                if t._version != version:
                    producer = "the model input" if index < 0 else f"module '{calls[index].name}'"
                    return None, True, f"is changed in place after {producer} computed it"
                return index, t is ref or (t.is_contiguous() and ref.is_contiguous()), ""
        return None, True, "is computed outside any layer module"

    code = _ForwardCode([probe], lambda: f"module '{calls[-1].name}'" if calls else "the model input")

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        code.inside_layer += 1
        name = names.get(module, type(module).__name__)
        x = single_tensor(module, name, args, kwargs, method)
        source, in_order, computed_by = source_of(x)
        stack.append(len(calls))
        calls.append(LayerCall(name, module, source, in_order, tuple(x.shape), computed_by))

    def after(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        index = stack.pop()
        for t in output if isinstance(output, tuple | list) else (output,):
            if isinstance(t, torch.Tensor):
                produced.append((index, t, t._version))
                code.mark([t], gate=isinstance(module, GATES))
        if any(output is a for a in (*args, *kwargs.values())):
            calls[index] = replace(calls[index], returns_input=True)
        code.inside_layer -= 1

    leaves = [m for m in names if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in leaves]
    handles += [m.register_forward_hook(after, with_kwargs=True) for m in leaves]
    try:
        with torch.no_grad(), code:
            out = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor):
        raise UnsupportedModelError(f"{method}: the model returns {type(out).__name__}, not a logits tensor.")
    source, in_order, computed_by = source_of(out)
    if source is not None and source < 0:
        raise UnsupportedModelError(f"{method}: the model returns its input; no layer to propagate through.")
    return LayerTrace(calls, source, in_order, computed_by, tuple(code.nonlinear))


# ---------------------------------------------------------------------------------------------------------
# Canonisation


def fold_batch_norms(model: nn.Module, trace: LayerTrace) -> bool:
    """Fold every eval-mode `BatchNorm2d` that directly and alone follows a `Conv2d` into that convolution
    (w' = s·w, b' = s·b + β − s·μ with s = γ/√(σ² + ε)) and replace it by `nn.Identity`, in place; True if
    any was folded. This is LRP's canonisation (Montavon et al. 2019; Motzkus et al. 2022): the rules were
    designed for a linear layer followed by its activation, and applied to the folded layer they see its
    real weights (α-β then splits the contributions a negative BatchNorm scale would flip). For the z-rule
    it changes nothing: the z-rule through BatchNorm with its shift as a bias gives the same relevance."""
    consumers: dict[int, int] = {}
    for call in trace.calls:
        if call.source is not None:
            consumers[call.source] = consumers.get(call.source, 0) + 1
    parents = {m: (parent, name) for parent in model.modules() for name, m in parent.named_children()}
    folded = False
    for call in trace.calls:
        bn = call.module
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_var is None or call.source is None:
            continue
        conv = trace.calls[call.source].module if call.source >= 0 else None
        if not isinstance(conv, nn.Conv2d) or consumers[call.source] != 1 or not call.in_order:
            continue
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.weight is not None:
                scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
            bias = shift if conv.bias is None else conv.bias * scale + shift
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
            conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
        parent, name = parents[bn]
        setattr(parent, name, nn.Identity())
        folded = True
    return folded


# ---------------------------------------------------------------------------------------------------------
# The engine


class _LayerRule(torch.autograd.Function):
    """Forward: the layer's output `y` (computed by the layer from `x`). Backward: the rule maps the
    relevance of `y` to that of `x`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, rule: Callable[[torch.Tensor], torch.Tensor]):
        ctx.rule = rule
        return y.clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.rule(relevance), None, None


class _RateToRelevance(torch.autograd.Function):
    """Identity forward; backward c ↦ a ⊙ c: where a layer output (or the model input) `a` feeds code in
    `forward`, whose gradient carries relevance per unit activation."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
        ctx.value = a.detach()  # `a` itself is never changed: forward code gets (and may change) the copy
        return a.clone()

    @staticmethod
    def backward(ctx: Any, rate: torch.Tensor) -> torch.Tensor:
        return ctx.value * rate


class _RelevanceToRate(torch.autograd.Function):
    """Identity forward; backward R ↦ R / a (0 where a = 0): where code in `forward` computed a layer's
    input `a`."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor) -> torch.Tensor:
        ctx.value = a.detach().clone()
        return a.clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> torch.Tensor:
        zero = ctx.value == 0
        return torch.where(zero, 0.0, relevance / torch.where(zero, 1.0, ctx.value))


def propagate_relevance(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    trace: LayerTrace,
    rules: Mapping[nn.Module, RelevanceRule],
    *,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of `inputs` for the target logits, starting from R = logit at the target, through the
    layer calls of `trace` with `rules[module]` each (see the module docstring for what happens between
    them), and the target logits. `model` is the traced canonical copy; every module it calls needs a
    rule."""
    calls = trace.calls
    produced: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    counter, stack = iter(range(len(calls) + 1)), []

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        index = next(counter)
        if index >= len(calls) or calls[index].module is not module:
            raise UnsupportedModelError(
                f"{method}: the model calls its layers in another order for this batch than for its first "
                "image; relevance propagation needs one fixed sequence of layer calls."
            )
        call = calls[index]
        t = single_tensor(module, call.name, args, kwargs, method)
        if call.source is None:
            new = _RelevanceToRate.apply(t)
        else:
            with_rule, fed_forward = produced[call.source]  # equal strides: one is a clone of the other
            offset = t.storage_offset() - fed_forward.storage_offset() + with_rule.storage_offset()
            new = with_rule if t is fed_forward else with_rule.as_strided(t.size(), t.stride(), offset)
        stack.append(index)
        args = tuple(new if a is t else a for a in args)
        return args, {k: new if v is t else v for k, v in kwargs.items()}

    def after(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor) -> Any:
        index = stack.pop()
        x = single_tensor(module, calls[index].name, args, kwargs, method)

        def rule(relevance: torch.Tensor) -> torch.Tensor:  # the call's graph x → output, used once
            return rules[module].relevance(module, x, output, relevance)

        with_rule = _LayerRule.apply(x, output.detach(), rule)
        produced[index] = (with_rule, _RateToRelevance.apply(with_rule))
        return produced[index][1]

    leaves = {call.module for call in calls}
    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in leaves]
    handles += [m.register_forward_hook(after, with_kwargs=True) for m in leaves]
    x = inputs.detach().contiguous().requires_grad_(True)  # a clone of it has the same strides
    produced[-1] = (x, _RateToRelevance.apply(x))
    try:
        with torch.enable_grad():
            logits = model(produced[-1][1])
            if logits.dim() != 2:
                raise UnsupportedModelError(
                    f"{method}: the model returns {tuple(logits.shape)}, not [B, classes]."
                )
            if targets.numel() and int(targets.max()) >= logits.shape[1]:
                raise ValueError(f"Targets must lie in [0, {logits.shape[1]}); got {targets.tolist()}.")
            start = F.one_hot(targets, logits.shape[1]).to(logits.dtype)  # c = 1: R = a·c is the logit
            (relevance,) = torch.autograd.grad(logits, x, start, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    chosen = logits.detach().gather(1, targets[:, None]).squeeze(1)
    return (torch.zeros_like(inputs) if relevance is None else relevance.detach()), chosen
