"""DeepLIFT's summation-to-delta (Shrikumar et al. 2017, eq. 1): what breaks it in a model, and by how much.

Captum's DeepLIFT has rules for ReLU-like activations, Sigmoid, Tanh, Softmax and max-pooling
(`SUPPORTED_NON_LINEAR`), and `deeplift_model` gives the Rescale rule to other element-wise activation
modules (`Rescaled`); every other operation is differentiated as if it were linear. Where such an
operation is not linear, the attributions no longer sum to f(x) − f(reference). `deeplift_nonlinearities`
finds those operations in one probe pass (a `TorchFunctionMode` that sees every torch function the forward
calls on tensors derived from the input, and the module that calls it), so that warnings and the stored
note name the real cause. Two kinds are refused outright (`refuse_undefined`), because DeepLIFT is not
defined there and the maps would not be DeepLIFT at all (gaps of 100 % and more measured on HF ViT and
ConvNeXt): a matrix product of two input-dependent tensors (attention) and normalisation by statistics of
the input (LayerNorm, GroupNorm, InstanceNorm; LN(c·x) = LN(x), so with the zero reference the linear
treatment passes nothing through). Element-wise products of two input-dependent tensors (squeeze-excitation
gates) get `ProductRule`'s multipliers. Other non-linearities (activations applied as functions in
forward, `torch.max`, ...) are kept: the per-image gap is recorded instead.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

from attribench_core import Explainer
from attribench_methods.model_checks import PerCall, Rescaled, UnsupportedModelError, overlapping

# The stored gap divides by max(|f(x) − f(reference)|, GAIN_FLOOR); the warning fires where the gap exceeds
# GAP_TOLERANCE and the miss itself exceeds ROUNDING (float32 rounding of the sums, in logit units).
GAIN_FLOOR = 1e-12
GAP_TOLERANCE = 1e-3
ROUNDING = 1e-5
SHOWN_CAUSES = 3


def _names(*groups: str) -> frozenset[str]:
    return frozenset(" ".join(groups).split())


# Linear in their tensor arguments (torch names without the `torch.`, `torch.Tensor.` or
# `torch.nn.functional.` prefix): DeepLIFT's gradient through them is exact.
LINEAR = _names(
    "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear embedding",
    "avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d",
    "add add_ __add__ __iadd__ __radd__ sub sub_ __sub__ __isub__ __rsub__ neg __neg__ sum mean cumsum",
    "flatten reshape view view_as permute transpose t contiguous __getitem__ cat concat stack squeeze",
    "unsqueeze expand expand_as repeat tile narrow split chunk unbind clone to float double half type_as",
    "pad unfold fold pixel_shuffle pixel_unshuffle roll flip movedim swapaxes interpolate identity",
)
# Linear when at most one operand depends on the input (and, for a division, not the divisor); products of
# two input-dependent tensors get `ProductRule`'s multipliers where they are not in place.
PRODUCTS = _names("mul mul_ __mul__ __imul__ __rmul__ div div_ __truediv__ __itruediv__")
RULED_PRODUCTS = _names("mul __mul__ __rmul__")
MATRIX_PRODUCTS = _names("matmul __matmul__ __rmatmul__ bmm mm einsum baddbmm addmm bilinear")
# Linear unless they use the batch's own statistics or drop at random (training mode).
TRAINING_DEPENDENT = _names("batch_norm dropout dropout1d dropout2d dropout3d alpha_dropout")
NORMALISATIONS = _names("layer_norm group_norm instance_norm rms_norm local_response_norm")
ATTENTION = _names("scaled_dot_product_attention multi_head_attention_forward")


@dataclass(frozen=True)
class NonLinearity:
    """A non-linear operation of the forward pass that DeepLIFT has no rule for."""

    where: str  # "module 'blocks.0.act' (GELU)"
    operation: str  # "F.gelu", "an overlapping max-pool", ...
    undefined: bool  # attention or input normalisation: DeepLIFT is not defined there

    def __str__(self) -> str:
        return f"{self.operation} in {self.where}"


# How a torch function is shown: F.gelu, Tensor.relu_, torch.max.
PREFIXES = {
    "torch.nn.functional.": "F.",
    "torch.Tensor.": "Tensor.",
    "torch._C._nn.": "F.",
    "torch.": "torch.",
}


def _names_of(func: Any) -> tuple[str, str]:
    """(bare name, shown name) of a torch function: ("gelu", "F.gelu")."""
    name = resolve_name(func) or getattr(func, "__name__", repr(func))
    for prefix, shown in PREFIXES.items():
        if name.startswith(prefix):
            return name[len(prefix) :], shown + name[len(prefix) :]
    return name, name


def _depends(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _argument(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return True  # unknown signature: assume the worst
    bound.apply_defaults()
    return bound.arguments.get(name, True)


def classify(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, bool] | None:
    """(operation, undefined) for a call on input-dependent tensors that DeepLIFT would treat as linear
    but is not; None for a linear call."""
    name, shown = _names_of(func)
    operands = [a for a in (*args, *kwargs.values()) if _depends(a)]
    operands += [t for a in args if isinstance(a, list | tuple) for t in a if _depends(t)]
    if name in LINEAR:
        return None
    if name in TRAINING_DEPENDENT:
        return (f"{shown} in training mode", False) if _argument(func, args, kwargs, "training") else None
    if name in MATRIX_PRODUCTS:
        return (f"a matrix product of two input-dependent tensors ({name})", True) if operands[1:] else None
    if name in PRODUCTS:
        divisor = name.startswith(("div", "__truediv", "__itruediv")) and len(args) > 1 and _depends(args[1])
        if (len(operands) > 1 and name not in RULED_PRODUCTS) or divisor:
            return (f"a product of two input-dependent tensors ({name})", False)
        return None
    if name in ATTENTION:
        return (f"attention ({shown})", True)
    if name in NORMALISATIONS:
        return (f"normalisation by the input's statistics ({shown})", True)
    return (shown, False)


class _Recorder(TorchFunctionMode):
    """Records every non-linear call on input-dependent tensors outside modules with a DeepLIFT rule
    (Captum's, and `Rescaled`), with the innermost module running it."""

    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.found: list[tuple[nn.Module | None, str, bool]] = []

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        module = self.stack[-1] if self.stack else None
        ruled = any(type(m) in SUPPORTED_NON_LINEAR or isinstance(m, Rescaled) for m in self.stack)
        if not ruled and any(_depends(t) for t in (out if isinstance(out, tuple | list) else (out,))):
            kind = classify(func, args, kwargs)
            if kind is not None:
                self.found.append((module, *kind))
        return out


class ProductRule(TorchFunctionMode):
    """While active, every element-wise product u·v of two tensors that both carry gradients and hold a
    DeepLIFT batch (`batch` rows: inputs, then as many references, Captum's layout) passes the multipliers
    m_u = ½(v_x + v_r) to u and m_v = ½(u_x + u_r) to v; its value is unchanged.

    DeepLIFT defines no rule for products of two input-dependent tensors (squeeze-excitation gates,
    x·σ(x) written out); these multipliers are the Shapley values of the two factors (ours), so that
    m_u·Δu + m_v·Δv = u_x·v_x − u_r·v_r exactly and summation-to-delta holds through the product.
    """

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        pair = len(args) == 2 and not kwargs and all(self._paired(a) for a in args)
        if pair and _names_of(func)[0] in RULED_PRODUCTS:
            return _shapley_product(*args)
        return func(*args, **(kwargs or {}))

    def _paired(self, value: Any) -> bool:
        return _depends(value) and value.dim() > 0 and value.shape[0] == self.batch


def _shapley_product(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        product = u * v
        (u_x, u_r), (v_x, v_r) = u.chunk(2), v.chunk(2)
        to_u, to_v = torch.cat(2 * [(v_x + v_r) / 2]), torch.cat(2 * [(u_x + u_r) / 2])
    return product + to_u * (u - u.detach()) + to_v * (v - v.detach())


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Paths of `model`'s modules; the copies inside a `PerCall` are named after the module they replace."""
    names = {m: p for p, m in model.named_modules()}
    for path, module in model.named_modules():
        if isinstance(module, PerCall):
            names.update({copy: f"{path} (call {i + 1})" for i, copy in enumerate(module.copies)})
    return names


def deeplift_nonlinearities(model: nn.Module, probe: torch.Tensor) -> list[NonLinearity]:
    """The operations of one forward pass of `probe` (one image) through `model` (a `deeplift_model`) that
    DeepLIFT treats as linear but are not, in order of first call, each once per module."""
    names = module_names(model)
    stack: list[nn.Module] = []
    recorder = _Recorder(stack)
    modules = list(model.modules())

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(module)

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    handles = [m.register_forward_pre_hook(enter) for m in modules]
    handles += [m.register_forward_hook(leave, always_call=True) for m in modules]
    frozen = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)  # so that `requires_grad` marks what depends on the input
        probe = probe.detach().clone().requires_grad_(True)
        with torch.enable_grad(), recorder:
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
        for p in frozen:
            p.requires_grad_(True)
    found = [
        NonLinearity(_where(m, names), "an overlapping max-pool (Captum's rule loses part of Δy)", False)
        for m in modules
        if isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d) and overlapping(m)
    ]
    for module, operation, undefined in recorder.found:
        item = NonLinearity(_where(module, names), operation, undefined)
        if item not in found:
            found.append(item)
    return found


def _where(module: nn.Module | None, names: dict[nn.Module, str]) -> str:
    if module is None:
        return "code outside the model's modules"
    name = names.get(module, "")
    return (
        f"module '{name}' ({type(module).__name__})"
        if name
        else f"the model's forward ({type(module).__name__})"
    )


def refuse_undefined(found: list[NonLinearity], method: str) -> None:
    """Raise `UnsupportedModelError` naming the first operation where DeepLIFT is not defined."""
    undefined = [f for f in found if f.undefined]
    if undefined:
        raise UnsupportedModelError(
            f"{method}: {undefined[0]} has no DeepLIFT rule, and treating it as linear does not give "
            "DeepLIFT maps (attributions miss f(x) − f(reference) by 100 % and more); use integrated "
            "gradients (ig) or a gradient method for this model."
        )


def describe_causes(found: list[NonLinearity]) -> str:
    """The cause of a summation gap in words: each kind of operation with the first module that runs it
    (and how many more do), up to `SHOWN_CAUSES` kinds."""
    if not found:
        return (
            "non-linear operations in forward that the probe cannot see (custom autograd functions or "
            "compiled code) are treated as linear by DeepLIFT"
        )
    kinds: dict[str, list[NonLinearity]] = {}
    for item in found:
        kinds.setdefault(item.operation, []).append(item)
    parts = [
        f"{first}" + (f" and {len(rest)} more modules" if rest else "")
        for first, *rest in list(kinds.values())[:SHOWN_CAUSES]
    ]
    if len(kinds) > SHOWN_CAUSES:
        parts.append(f"{len(kinds) - SHOWN_CAUSES} more kinds of operation")
    verbs = ("has", "is") if len(found) == 1 else ("have", "are")
    return f"{', '.join(parts)} {verbs[0]} no DeepLIFT rule and {verbs[1]} treated as linear"


def record_summation_gap(
    explainer: Explainer,
    sums: torch.Tensor,
    gains: torch.Tensor,
    what: str,
    found: list[NonLinearity],
) -> None:
    """Set `explainer.diagnostics["summation_gap"]` to |Σ attributions − gain| / max(|gain|, 1e-12) per image
    (`sums` and `gains` `[B]`, the gain being `what`, e.g. f(x) − f(0)); where it exceeds `GAP_TOLERANCE`
    (and rounding), add the cause as the diagnostic's note and warn once per explainer naming it."""
    sums, gains = sums.detach(), gains.detach()
    miss = (sums - gains).abs()
    gap = miss / gains.abs().clamp(min=GAIN_FLOOR)
    explainer.diagnostics["summation_gap"] = gap
    bad = (gap > GAP_TOLERANCE) & (miss > ROUNDING)
    if not bool(bad.any()):
        return
    cause = describe_causes(found)
    explainer.diagnostic_notes["summation_gap"] = cause
    if not getattr(explainer, "_warned", False):
        explainer._warned = True
        worst = 100 * float(gap[bad].max())
        warnings.warn(
            f"{type(explainer).__name__}: summation-to-delta misses {what} by up to "
            f"{f'{worst:,.0f}' if worst >= 100 else f'{worst:.2g}'} % on "
            f"{int(bad.sum())} of {len(bad)} images: {cause}.",
            RuntimeWarning,
            stacklevel=3,
        )
