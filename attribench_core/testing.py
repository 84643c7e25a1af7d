"""Helpers for testing plugins without installing them (and for attribench's own tests).

from attribench_core.testing import plugin_registry, using_plugins, check_explainer, tiny_model

registry = plugin_registry({"myns": my_pkg.plugin})       # core + your plugin, no entry points
with using_plugins({"myns": my_pkg.plugin}):               # ... and the CLI sees the same
    CliRunner().invoke(cli, ["run", "core.relevance_mass", "--explainer", "myns.myexp"])
check_explainer(MyExplainer())                             # the Explainer contract on a tiny CNN
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attribench_core import plugins
from attribench_core.explainer import Explainer
from attribench_core.registry import Registry


def plugin_registry(
    extra: dict[str, object] | None = None, *, entrypoints: bool = False, strict: bool = True
) -> Registry:
    """A fresh registry with the core plugin, `extra` {namespace: plugin}, and installed plugins if asked.

    Strict by default: a plugin error raises instead of becoming a warning.
    """
    return plugins.build_registry(
        plugins.make_plugins(load_entrypoints=entrypoints, extra=extra, strict=strict)
    )


@contextmanager
def using_plugins(extra: dict[str, object] | None = None, *, entrypoints: bool = False) -> Iterator[Registry]:
    """Make the process-wide plugins (used by the CLI) exactly these, for the duration of the block."""
    plugins.use(plugins.make_plugins(load_entrypoints=entrypoints, extra=extra, strict=True))
    try:
        yield plugins.get_registry()
    finally:
        plugins.use(None)


def tiny_model(num_classes: int = 4, channels: int = 3, seed: int = 0) -> torch.nn.Module:
    """A small seeded CNN (conv-relu-pool-conv-relu-avgpool-linear) for inputs `[B,channels,H,W]`."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, num_classes),
    ).eval()


def _snapshot(model: torch.nn.Module) -> dict[str, object]:
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ],
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }


def check_explainer(
    explainer: Explainer, model: torch.nn.Module | None = None, size: int = 16
) -> torch.Tensor:
    """Assert the Explainer contract on a batch of 3 random images: shape, finite values, determinism under
    a seeded generator, and the model left as found. Returns the attributions."""
    model = tiny_model() if model is None else model
    inputs = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2])
    before = _snapshot(model)
    first = explainer(model, inputs, targets, generator=torch.Generator().manual_seed(7))
    second = explainer(model, inputs, targets, generator=torch.Generator().manual_seed(7))
    channels = 1 if explainer.channel_less else inputs.shape[1]
    assert first.shape == (3, channels, size, size), f"unexpected shape {tuple(first.shape)}"
    assert first.dtype == torch.float32, f"unexpected dtype {first.dtype}"
    assert torch.isfinite(first).all(), "non-finite attributions"
    assert torch.equal(first, second), "not deterministic under the same generator seed"
    after = _snapshot(model)
    assert all(torch.equal(before["params"][k], after["params"][k]) for k in before["params"]), (
        "parameters changed"
    )
    for key in ("requires_grad", "training", "hooks", "attributes"):
        assert before[key] == after[key], f"model {key} changed"
    return first
