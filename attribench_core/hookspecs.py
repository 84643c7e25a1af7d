"""The plugin contract: seven hooks, each handed a `register` callback (or the CLI group).

A plugin implements any subset with `@hookimpl`; the core calls hooks through pluggy, which passes an
implementation only the arguments it names (a hook can gain one without breaking older plugins).
`register(name, target, *, description="", aliases=(), kwargs=None, **meta)` records a short name
(`^[a-z][a-z0-9_]*$`) that the core prefixes with the plugin's namespace (`methods.ig`); `target` is a
class or a lazy `"module:attr"` string, so listing never imports heavy code; `kwargs` are bound to the
target when it is called (`Entry.create`, as `functools.partial`): `register("scene3",
"attribench_bam.models:SceneKModel", kwargs={"k": 3})`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from attribench_core.registry import Register

hookspec = pluggy.HookspecMarker("attribench")
hookimpl = pluggy.HookimplMarker("attribench")


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: factories `(split, seed, **options) -> Dataset`."""


@hookspec
def register_models(register: Register) -> None:
    """Register models: `Model` subclasses that build a network and obtain its weights."""


@hookspec
def register_explainers(register: Register) -> None:
    """Register attribution methods: `Explainer` subclasses."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register metrics: `Metric` subclasses."""


@hookspec
def register_reports(register: Register) -> None:
    """Register report sections: functions `(ReportInput) -> list[Section]` (`attribench_core.report`)."""


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: `Executor` subclasses that compute a run's batches (`attribench_core.executor`)."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add Click sub-commands to the `attribench` command group."""
