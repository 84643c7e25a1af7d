"""Helpers for testing plugins without installing them (and for attribench's own tests).

from attribench_core.testing import plugin_registry, using_plugins, check_explainer, tiny_model

registry = plugin_registry({"myns": my_pkg.plugin})       # core + your plugin, no entry points
with using_plugins({"myns": my_pkg.plugin}):               # ... and the CLI sees the same
    CliRunner().invoke(cli, ["run", "core.relevance_mass", "--explainer", "myns.myexp"])
check_explainer(MyExplainer())                             # the Explainer contract on a tiny CNN
registry = plugin_registry({"t": ShuffledExecutor.plugin()})  # executor "t.shuffled": items in any order
before = model_snapshot(model); ...; assert not model_changes(before, model_snapshot(model))
assert refused_run({"myns": my_pkg.plugin}, ["myns.metric", "--k", "0"]) == "Usage error: ...\n"
"""

from __future__ import annotations

import random
import tempfile
import types
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from attribench_core import plugins
from attribench_core.executor import Executor, Work, attempt
from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.params import Param
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


def refused_run(extra: dict[str, object], args: Sequence[str]) -> str:
    """The output of `attribench run ARGS` with the core and `extra` plugins, its store and cache in an
    empty temporary folder; checks that the command was refused as a usage error (exit 2) before anything
    was written there (data, weights, store)."""
    from click.testing import CliRunner

    from attribench_core.cli import cli

    with tempfile.TemporaryDirectory() as name, using_plugins(extra):
        folder = Path(name)
        result = CliRunner().invoke(
            cli,
            ["run", *args, "--store", str(folder / "attribench.h5")],
            env={"ATTRIBENCH_HOME": str(folder / "home")},
        )
        assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
        assert not any(folder.iterdir()), f"a refused run wrote {sorted(folder.iterdir())}"
    return result.output


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


def model_snapshot(model: torch.nn.Module) -> dict[str, object]:
    """Everything an explainer must leave as found, for `model_changes`: the state dict (cloned), each
    parameter's `requires_grad` and whether it has a `.grad`, each module's mode, attribute names and hook
    counts, and the process-wide module hooks. Independent of `preserved_model_state`, which it checks."""
    global_hooks = vars(torch.nn.modules.module)
    return {
        "state dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad is None) for n, p in model.named_parameters()],
        "training flags": [(n, m.training) for n, m in model.named_modules(remove_duplicate=False)],
        "hooks": [
            (n, {k: len(v) for k, v in vars(m).items() if "hook" in k and isinstance(v, dict)})
            for n, m in model.named_modules(remove_duplicate=False)
        ],
        "attributes": [(n, sorted(vars(m))) for n, m in model.named_modules(remove_duplicate=False)],
        "global hooks": [
            (k, len(v)) for k, v in global_hooks.items() if k.startswith("_global") and isinstance(v, dict)
        ],
    }


def model_changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """What differs between two `model_snapshot`s (state dict entries compared bit for bit); [] if nothing."""
    old, new = before["state dict"], after["state dict"]
    changed = [f"state dict entry {k!r}" for k in old if k not in new or not torch.equal(old[k], new[k])]
    changed += [f"state dict entry {k!r} added" for k in new if k not in old]
    return changed + [key for key in before if key != "state dict" and before[key] != after[key]]


def check_explainer(
    explainer: Explainer, model: torch.nn.Module | None = None, size: int = 16
) -> torch.Tensor:
    """Assert the Explainer contract on a batch of 3 random images: shape, finite values, determinism under
    a seeded generator, and the model left as found. Returns the attributions."""
    model = tiny_model() if model is None else model
    inputs = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2])
    before = model_snapshot(model)
    first = explainer(model, inputs, targets, generator=torch.Generator().manual_seed(7))
    second = explainer(model, inputs, targets, generator=torch.Generator().manual_seed(7))
    channels = 1 if explainer.channel_less else inputs.shape[1]
    assert first.shape == (3, channels, size, size), f"unexpected shape {tuple(first.shape)}"
    assert first.dtype == torch.float32, f"unexpected dtype {first.dtype}"
    assert torch.isfinite(first).all(), "non-finite attributions"
    assert torch.equal(first, second), "not deterministic under the same generator seed"
    changes = model_changes(before, model_snapshot(model))
    assert not changes, f"the explainer changed the model: {', '.join(changes)}"
    return first


class ShuffledExecutor(Executor):
    """In this process, every item in an order shuffled by `seed`: what a distributed executor whose
    workers finish in any order must give, checked in-process (results must equal `core.local`'s)."""

    options = (Param("seed", 0, "seed of the shuffled order", int),)

    def map(self, work: Work, items: Iterable[Any], ctx: Any) -> Iterator[tuple[int, Any]]:
        numbered = list(enumerate(items))
        random.Random(self.opts["seed"]).shuffle(numbered)
        for position, item in numbered:
            yield position, attempt(work, ctx, item)

    @classmethod
    def plugin(cls, name: str = "shuffled") -> types.SimpleNamespace:
        """A plugin registering this executor as `name`."""

        @hookimpl
        def register_executors(register: Any) -> None:
            register(name, cls, description="Items in a shuffled order, in this process (tests)")

        return types.SimpleNamespace(register_executors=register_executors)
