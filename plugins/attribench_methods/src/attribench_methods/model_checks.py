"""Preparing a model for methods that hook its modules (Guided Backprop, Deconvnet, Grad-CAM, DeepLIFT, LRP).

Captum implements these methods with per-module hooks that assume each hooked module runs once per forward
pass and does not overwrite its input. Two common patterns break that assumption:

- in-place activations (`nn.ReLU(inplace=True)`): the layer's input is gone when the hook reads it;
- one module called several times (torchvision's ResNet blocks call one `relu` two or three times): the
  hooks keep one call's state per module, so DeepLIFT fails and Deconvnet can silently mix up the calls
  (it does on two parallel branches sharing a ReLU).

`canonical_copy` removes both on a deep copy, which also keeps the caller's model free of what the methods
change on it (the LRP family's folded BatchNorms, Captum's hooks) and of a probe pass's BatchNorm updates.
A method that hooks a single layer and changes no weight (Grad-CAM) needs neither the probe nor copies of
the weights: `weight_sharing_copy`.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

from attribench_core import AttribenchError, check_hookable


class UnsupportedModelError(AttribenchError, ValueError):
    """A model has a layer or structure that a method cannot explain correctly; the message names it."""


class PerCall(nn.Module):
    """Stands in for a module that one forward pass calls several times: call i runs copy i, so hooks on
    each copy see exactly one call. `calls` is reset before every forward of the model that holds it."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def _reset_calls(root: nn.Module, args: Any) -> None:
    for module in root.modules():
        if isinstance(module, PerCall):
            module.calls = 0


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every module without children: the layers that hooks attach to."""
    return [(path, m) for path, m in model.named_modules() if next(m.children(), None) is None]


def probe_pass(model: nn.Module, probe: torch.Tensor, modules: list[nn.Module], pre_hook: Any) -> None:
    """One forward pass of `probe` without gradients, with `pre_hook(module, args)` on `modules`, which are
    removed afterwards whatever happens."""
    handles = [m.register_forward_pre_hook(pre_hook) for m in modules]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()


def call_counts(model: nn.Module, probe: torch.Tensor) -> Counter[nn.Module]:
    """How many times one forward pass of `probe` calls each leaf module."""
    counts: Counter[nn.Module] = Counter()
    probe_pass(model, probe, [m for _, m in leaf_modules(model)], lambda mod, _: counts.update([mod]))
    return counts


def canonical_copy(model: nn.Module, inputs: torch.Tensor, *, method: str) -> nn.Module:
    """A deep copy of `model` with in-place activations made out-of-place and every leaf module that one
    forward calls k > 1 times replaced by a `PerCall` of k copies (found by a probe pass on `inputs[:1]`).

    The copy computes the same function; the caller's model is never touched. TorchScript, whose modules
    take no hooks, is refused here for every hook-based method.
    """
    check_hookable(model, method)
    clone = _out_of_place_copy(model, method)
    paths: dict[nn.Module, list[str]] = {}
    for path, module in clone.named_modules(remove_duplicate=False):
        paths.setdefault(module, []).append(path)
    reused = {m: n for m, n in call_counts(clone, inputs[:1]).items() if n > 1}
    for module, n in reused.items():
        wrapper = PerCall(module, n)
        for path in paths[module]:
            parent, _, name = path.rpartition(".")
            setattr(clone.get_submodule(parent), name, wrapper)
    if reused:
        clone.register_forward_pre_hook(_reset_calls)
    return clone


def weight_sharing_copy(model: nn.Module, *, method: str) -> nn.Module:
    """A copy of `model` whose modules share its parameters, with in-place activations made out-of-place:
    enough for a method that hooks one layer and changes no weight (Grad-CAM), at a fraction of a deep
    copy's cost (a ResNet-18's 11.7 M parameters). Buffers are copied, so that a forward pass in training
    mode leaves the caller's BatchNorm statistics alone. TorchScript is refused as in `canonical_copy`."""
    check_hookable(model, method)
    return _out_of_place_copy(model, method, {id(p): p for p in model.parameters()})


def _out_of_place_copy(model: nn.Module, method: str, memo: dict[int, Any] | None = None) -> nn.Module:
    """`copy.deepcopy(model, memo)` with `inplace` turned off on every module that has it."""
    try:
        clone = copy.deepcopy(model, memo)
    except Exception as exc:
        raise UnsupportedModelError(
            f"{method} works on a copy of the model, and this model cannot be deep-copied ({exc})."
        ) from exc
    for module in clone.modules():
        if getattr(module, "inplace", None) is True:
            module.inplace = False
    return clone


def _fresh_inputs(module: torch.nn.Module, args: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def deeplift_model(model: torch.nn.Module, inputs: torch.Tensor, *, method: str) -> torch.nn.Module:
    """`canonical_copy(model)` prepared for Captum's DeepLIFT.

    - Every module that Captum's DeepLIFT hooks receives a fresh input tensor. Captum records a module's
      output gradient with a hook on its output tensor, and replaces the next module's input gradient (by its
      multipliers) with a hook on that module's input tensor. When two hooked modules are adjacent (ReLU →
      MaxPool2d, as in VGG) these are one tensor, the recording hook runs first, and the earlier module's
      rule sees the plain gradient instead of the later one's multipliers: summation-to-delta then fails (by
      as much as f(x) − f(b) itself against training images). A clone between the two keeps them apart.
    - `AdaptiveMaxPool2d` layers, which Captum's DeepLIFT has no rule for (it would treat them as linear),
      are replaced by the equivalent `MaxPool2d` where the input size is a multiple of the output size.
    - Overlapping `MaxPool2d` layers (kernel > stride, as ResNet's 3×3/2 stem) become `WindowedMaxPool2d`,
      on which Captum's rule conserves exactly (see there).
    - Element-wise activations that Captum has no rule for (GELU, SiLU, ReLU6, Hardswish, ...:
      `RESCALED_ACTIVATIONS`) become `Rescaled`, which gives them DeepLIFT's Rescale rule.
    """
    clone = canonical_copy(model, inputs, method=method)
    for path, pool, size in _adaptive_max_pools(clone, inputs[:1]):
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        out = tuple(s if o is None else o for s, o in zip(size, out, strict=True))
        if any(s % o for s, o in zip(size, out, strict=True)):
            raise UnsupportedModelError(
                f"{method}: '{path}' (AdaptiveMaxPool2d) pools {size} to {out}, which is no plain "
                "max-pooling; DeepLIFT has no rule for it."
            )
        kernel = tuple(s // o for s, o in zip(size, out, strict=True))
        _replace(clone, path, nn.MaxPool2d(kernel, stride=kernel))
    for path, module in list(clone.named_modules()):
        if type(module) is nn.MaxPool2d and overlapping(module) and not module.return_indices:
            _replace(clone, path, WindowedMaxPool2d(module))
        elif type(module) in RESCALED_ACTIVATIONS:
            _replace(clone, path, Rescaled(module))
    for module in clone.modules():
        if type(module) in SUPPORTED_NON_LINEAR:
            module.register_forward_pre_hook(_fresh_inputs)
    return clone


# Element-wise activations without a rule in Captum's DeepLIFT, to which `Rescaled` gives the Rescale rule.
RESCALED_ACTIVATIONS = (
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.ReLU6, nn.Hardtanh, nn.SELU, nn.CELU,
    nn.PReLU, nn.Softsign, nn.LogSigmoid,
)  # fmt: skip


class Rescaled(nn.Module):
    """An element-wise activation whose gradient under Captum's DeepLIFT is the Rescale multiplier
    m = (f(x) − f(r)) / (x − r) (Shrikumar et al. 2017, §3.5.2; f′(x) where x = r), as Captum's rule for
    ReLU, Tanh, Sigmoid, ... computes it.

    Captum runs inputs and references as one batch `[inputs; references]`, so during attribution the first
    half of the batch holds x and the second r; the output is f(x) exactly, and the multiplier enters
    only through the gradient (`y + m·(x − x.detach())`). Outside attribution (no gradient, or an odd
    batch) it is the activation itself.
    """

    def __init__(self, activation: nn.Module, eps: float = 1e-10) -> None:
        super().__init__()
        self.activation, self.eps = activation, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.activation(x)
        if not (torch.is_grad_enabled() and x.requires_grad) or len(x) % 2:
            return y
        leaf = x.detach()[: len(x) // 2].requires_grad_(True)  # f′ at x, on a copy outside Captum's graph
        (slope,) = torch.autograd.grad(self.activation(leaf).sum(), leaf)
        with torch.no_grad():
            (a, r), (f_a, f_r) = x.chunk(2), y.chunk(2)
            delta = a - r
            step = delta.abs() >= self.eps
            multiplier = torch.where(step, (f_a - f_r) / torch.where(step, delta, 1.0), slope)
        return y.detach() + torch.cat([multiplier, multiplier]) * (x - x.detach())


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


def overlapping(pool: nn.MaxPool2d) -> bool:
    """Whether some input element lies in two windows of `pool` (a kernel wider than its stride)."""
    kernel, stride, dilation = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.dilation)
    return any(d * (k - 1) + 1 > s for k, s, d in zip(kernel, stride, dilation, strict=True))


class WindowedMaxPool2d(nn.Module):
    """An overlapping `MaxPool2d` computed as a copy of every window side by side (a linear map: unfold)
    followed by a non-overlapping `MaxPool2d` over the copies; the same values as the original.

    Why: Captum's DeepLIFT max-pooling rule gives each window's Δy to its arg-max input (Rescale per output
    element, Shrikumar et al. 2017), but it places them with `max_unpool2d`, which overwrites instead of
    adding where windows share their arg-max, so overlapping pools lose part of Δy. Here every window has its
    own copies of its inputs; the copies' multipliers are summed by the unfold's gradient, so the
    attributions sum to f(x) − f(r) exactly. Costs kernel area / stride area times the pool's input memory.
    """

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.kernel, self.stride = _pair(pool.kernel_size), _pair(pool.stride)
        self.padding, self.dilation = _pair(pool.padding), _pair(pool.dilation)
        self.ceil_mode = pool.ceil_mode
        self.pool = nn.MaxPool2d(self.kernel, stride=self.kernel)

    def _windows(self, size: int, axis: int) -> tuple[int, int]:
        """Windows along one spatial axis of `size` inputs, and the padding that the last one needs at the
        end (MaxPool2d's output size, `ceil_mode` included)."""
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        span = d * (k - 1) + 1
        out = (size + 2 * p - span + (s - 1 if self.ceil_mode else 0)) // s + 1
        if self.ceil_mode and (out - 1) * s >= size + p:  # PyTorch: the last window starts inside
            out -= 1
        return out, max(0, (out - 1) * s + span - size - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (rows, bottom), (cols, right) = self._windows(x.shape[-2], 0), self._windows(x.shape[-1], 1)
        # padding takes the lowest finite value: never a window's maximum, and equal in input and reference
        padded = F.pad(x, (self.padding[1], right, self.padding[0], bottom), value=torch.finfo(x.dtype).min)
        windows = F.unfold(padded, self.kernel, dilation=self.dilation, stride=self.stride)
        kh, kw = self.kernel
        windows = windows.view(x.shape[0], x.shape[1], kh, kw, rows, cols).permute(0, 1, 4, 2, 5, 3)
        return self.pool(windows.reshape(x.shape[0], x.shape[1], rows * kh, cols * kw))


def _adaptive_max_pools(
    model: nn.Module, probe: torch.Tensor
) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    """(path, module, input H×W) of every AdaptiveMaxPool2d that a forward pass of `probe` runs."""
    found = [(p, m) for p, m in model.named_modules() if isinstance(m, nn.AdaptiveMaxPool2d)]
    sizes: dict[nn.Module, tuple[int, int]] = {}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        sizes.setdefault(module, tuple(args[0].shape[-2:]))

    probe_pass(model, probe, [m for _, m in found], record)
    return [(p, m, sizes[m]) for p, m in found if m in sizes]
