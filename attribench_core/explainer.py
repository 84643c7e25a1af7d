"""The Explainer contract: a batched attribution method with declared parameters.

Subclasses implement `explain(model, inputs, targets)`. The runner calls the instance (`__call__`), which
enables gradients, hands out the run's random generator, checks the output's shape, and guarantees that
the model is left as it was found (hooks, `requires_grad`, train/eval mode) even when `explain` raises.
After the call, `diagnostics` holds the per-image numbers that `explain` reported for the batch (checked:
one value per image), which the runner stores beside the attributions.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from attribench_core.params import Param, resolve_params

if TYPE_CHECKING:
    import torch

DIAGNOSTIC_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# nn.Module attributes that hold hook dictionaries; anything added to them during `explain` is removed.
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class Explainer(ABC):
    """An attribution method.

    Declare tunable parameters in `parameters`; their values are in `self.params` (defaults merged with
    what the user gave, e.g. `--explainer ig:steps=32`), checked against each `Param`'s type, choices and
    range and then by `check_params` when the explainer is made. Set `channel_less = True` for methods that
    return `[B,1,H,W]` (Grad-CAM); otherwise `explain` returns a tensor shaped like `inputs`.
    Randomness must come from `self.generator` (a `torch.Generator` seeded by the run). Methods that need
    reference data (DeepSHAP's background) call `self.references(n)`: `n` training images `[n,C,H,W]` on
    the CPU, the same for every batch of a run.

    Per-image diagnostics: `explain` may set `self.diagnostics[name]` to one value per image of the batch
    (a tensor `[B]`; `name` in lower_snake_case, e.g. DeepLIFT's `summation_gap`) and
    `self.diagnostic_notes[name]` to one line saying what it means for this model (e.g. the cause of a
    gap). The runner stores them beside the attributions (`Stored.diagnostics`); both start empty for every
    call.
    """

    parameters: ClassVar[tuple[Param, ...]] = ()
    channel_less: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = resolve_params(self.parameters, params, owner=type(self).__name__)
        self.check_params()
        self.generator: torch.Generator | None = None
        self._references: Callable[[int], torch.Tensor] | None = None
        self.diagnostics: dict[str, torch.Tensor] = {}
        self.diagnostic_notes: dict[str, str] = {}

    def check_params(self) -> None:
        """Checks that relate several parameters (occlusion's stride ≤ window), run when the explainer is
        made: raise `ParameterError`, which the CLI reports when it reads the command (exit 2). The range
        of one parameter is declared on its `Param` instead; none by default."""
        return None

    def references(self, n: int) -> torch.Tensor:
        """`n` reference (training) images from the run, or an error saying none were given."""
        if self._references is None:
            raise ValueError(
                f"{type(self).__name__} needs reference images; pass references=<callable n -> images>."
            )
        return self._references(n)

    @abstractmethod
    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Attributions for `inputs[B,C,H,W]` w.r.t. the logits of `targets[B]` (a LongTensor on the inputs'
        device when called through the instance)."""

    def __call__(
        self,
        model: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        references: Callable[[int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        import torch

        self.generator = generator
        self.diagnostics, self.diagnostic_notes = {}, {}
        if references is not None:
            self._references = references
        with preserved_model_state(model), torch.inference_mode(False), torch.enable_grad():
            # tensors made under torch.inference_mode() cannot enter autograd; normal copies can
            targets = torch.as_tensor(targets, dtype=torch.long, device=inputs.device).clone().reshape(-1)
            inputs = inputs.clone() if inputs.is_inference() else inputs
            out = self.explain(model, inputs, targets)
        expected = (inputs.shape[0], 1, *inputs.shape[2:]) if self.channel_less else tuple(inputs.shape)
        if tuple(out.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}.explain returned shape {tuple(out.shape)}; expected {expected}."
            )
        self.diagnostics = self._checked_diagnostics(inputs.shape[0])
        return out.detach().float()

    def _checked_diagnostics(self, batch: int) -> dict[str, torch.Tensor]:
        """`self.diagnostics` as float32 CPU tensors `[batch]`, or a ValueError naming the bad one."""
        import torch

        checked = {}
        for name, values in self.diagnostics.items():
            values = torch.as_tensor(values).detach()
            if not DIAGNOSTIC_NAME.match(name) or values.shape != (batch,):
                raise ValueError(
                    f"{type(self).__name__}.explain reported diagnostic {name!r} of shape "
                    f"{tuple(values.shape)}; expected a lower_snake_case name and one value per image "
                    f"({batch})."
                )
            checked[name] = values.float().cpu()
        return checked


@contextmanager
def preserved_model_state(model: torch.nn.Module) -> Iterator[None]:
    """Restore `model` on exit, whatever happens inside: hooks, train/eval modes, attributes added to its
    modules (Captum's LRP leaves `rule`), buffers (BatchNorm statistics), `requires_grad` and `.grad`."""
    import torch

    modules = list(model.modules())
    modes = [m.training for m in modules]
    attributes = [set(vars(m)) for m in modules]
    hooks = [{name: set(getattr(m, name, {}) or {}) for name in _HOOK_DICTS} for m in modules]
    grads = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        for module, mode, kept_attributes, kept_hooks in zip(modules, modes, attributes, hooks, strict=True):
            module.training = mode
            for name in set(vars(module)) - kept_attributes:
                delattr(module, name)
            for name, keys in kept_hooks.items():
                current = getattr(module, name, None)
                for key in [k for k in (current or {}) if k not in keys]:
                    del current[key]
        for param, flag, grad in grads:
            param.requires_grad_(flag)
            param.grad = grad
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
