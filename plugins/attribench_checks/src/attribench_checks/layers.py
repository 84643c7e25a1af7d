"""The layers of a model and their re-initialisation: what the model parameter randomisation test
(Adebayo et al. 2018) changes, step by step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attribench_core import Alteration, ModelError

SEED_RANGE = 2**62  # each layer's seed is drawn from the alteration's generator in [0, SEED_RANGE)


def owns_parameters(module: nn.Module) -> bool:
    """Whether `module` holds parameters itself (not only through its children)."""
    return next(module.parameters(recurse=False), None) is not None


def parameter_layers(model: nn.Module, images: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order one forward pass on `images` first calls
    them (not `named_modules` order: a ResNet block may call its shortcut before the convolutions it
    registered first). Modules never called (unused heads) are left out; so are parameters that a
    forward pass uses without calling their module."""
    names = {module: name for name, module in model.named_modules() if owns_parameters(module)}
    order: list[str] = []

    def record(module: nn.Module, args: object) -> None:
        if names[module] not in order:
            order.append(names[module])

    handles = [module.register_forward_pre_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise ModelError("The model calls no module that holds parameters; there is no layer to randomise.")
    return order


def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draws `module`'s own parameters as a fresh one would have them: `reset_parameters()` under a seed
    drawn from `generator`, on the CPU (the same weights on every device), torch's global generator left as
    found. BatchNorm's reset is deterministic and resets its statistics too: γ = 1, β = 0, running mean 0
    and variance 1, so in eval mode the layer passes activations through (÷ √(1 + ε)). A module without
    `reset_parameters` has each own parameter drawn from a normal with that parameter's mean and standard
    deviation (its scale kept, what training learned lost)."""
    seed = int(torch.randint(SEED_RANGE, (), generator=generator))
    device = next(module.parameters(recurse=False)).device
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)  # the CPU's only: CUDA's stays as found
        module.to("cpu")
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for parameter in module.parameters(recurse=False):
                spread = parameter.std() if parameter.numel() > 1 else parameter.abs()
                parameter.copy_(torch.randn(parameter.shape) * spread + parameter.mean())
        module.to(device)


@dataclass(frozen=True)
class RandomiseLayers(Alteration):
    """Re-initialises the layers named in `layers` (module names, as `parameter_layers` gives them), in
    that order, each from its own seed drawn from the run's generator; the store keys each set of layers
    apart."""

    layers: tuple[str, ...]

    def alter(self, module: nn.Module, generator: torch.Generator) -> nn.Module:
        for name in self.layers:
            reinitialise(module.get_submodule(name), generator)
        return module
