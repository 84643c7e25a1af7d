"""Loading plugins: the built-in `core` plugin, then each `attribench` entry point in its own try/except.

Environment:
- `ATTRIBENCH_DISABLE_PLUGINS=a,b`: do not load these namespaces;
- `ATTRIBENCH_STRICT_PLUGINS=1` (or `strict=True`): a plugin that fails to load is an error, not a warning.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from attribench_core import hookspecs
from attribench_core.errors import PluginError
from attribench_core.registry import KINDS, Register, Registry

GROUP = "attribench"
BUILTIN = "attribench_core.builtin.plugin"


@dataclass
class PluginRecord:
    """A plugin as `attribench plugins` shows it."""

    namespace: str
    module: str
    dist: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """A plugin manager with what was loaded and what failed."""

    manager: pluggy.PluginManager
    records: dict[str, PluginRecord]
    strict: bool
    specs: object = hookspecs  # the module declaring the hooks
    _alone: dict[str, pluggy.PluginManager] = field(default_factory=dict, repr=False)

    def fail(self, namespace: str, module: str, exc: BaseException, **dist: Any) -> None:
        """Record a plugin failure: a warning, or an exception in strict mode."""
        message = f"{type(exc).__name__}: {exc}"
        if self.strict:
            raise PluginError(f"Plugin '{namespace}' ({module}) failed to load: {message}") from exc
        warnings.warn(f"attribench plugin '{namespace}' failed to load: {message}", stacklevel=2)
        self.records[namespace] = PluginRecord(namespace, module, error=message, **dist)
        if self.manager.has_plugin(namespace):
            self.manager.unregister(name=namespace)

    def call(self, namespace: str, hook: str, **kwargs: Any) -> None:
        """Call one plugin's implementation of `hook` through pluggy, which hands it only the arguments it
        names: a hook spec can gain an argument without breaking plugins written before. The call goes
        through a manager that holds this plugin alone (with the same hook specs), so that one plugin's
        failure is its own and any object pluggy accepts as a plugin works (`subset_hook_caller` would
        need hashable plugins)."""
        if namespace not in self._alone:
            alone = pluggy.PluginManager(GROUP)
            alone.add_hookspecs(self.specs)
            alone.register(self.manager.get_plugin(namespace), name=namespace)
            self._alone[namespace] = alone
        getattr(self._alone[namespace].hook, hook)(**kwargs)


def _env_strict() -> bool:
    return os.environ.get("ATTRIBENCH_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def make_plugins(
    *, load_entrypoints: bool = True, extra: dict[str, object] | None = None, strict: bool | None = None
) -> Plugins:
    """A fresh plugin manager: `core`, then entry points (unless disabled), then `extra` {namespace: plugin}.

    Tests and plugin authors pass `load_entrypoints=False` with `extra` to load exactly what they want.
    """
    from importlib import import_module

    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager, {}, _env_strict() if strict is None else strict)
    manager.register(import_module(BUILTIN), name="core")
    plugins.records["core"] = PluginRecord("core", BUILTIN, "attribench", _version("attribench"))
    blocked = {n.strip() for n in os.environ.get("ATTRIBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}
    if load_entrypoints:
        for ep in entry_points(group=GROUP):
            dist = {
                "dist": ep.dist.name if ep.dist else None,
                "version": ep.dist.version if ep.dist else None,
            }
            if ep.name in blocked:
                continue
            if ep.name in plugins.records:
                warnings.warn(
                    f"attribench plugin namespace '{ep.name}' from {dist['dist']} is already taken "
                    f"by {plugins.records[ep.name].dist}; skipped.",
                    stacklevel=2,
                )
                continue
            try:
                manager.register(ep.load(), name=ep.name)
            except Exception as exc:
                plugins.fail(ep.name, ep.value, exc, **dist)
                continue
            plugins.records[ep.name] = PluginRecord(ep.name, ep.value, **dist)
    for namespace, plugin in (extra or {}).items():
        manager.register(plugin, name=namespace)
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__name__
        plugins.records[namespace] = PluginRecord(namespace, module)
    manager.check_pending()
    for namespace, record in plugins.records.items():
        plugin = manager.get_plugin(namespace)
        if plugin is not None:
            record.hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or [])
    return plugins


def build_registry(plugins: Plugins) -> Registry:
    """Call every plugin's register hooks with `register` bound to that plugin's namespace; a plugin whose
    hook raises is dropped (a warning, or an error when strict)."""
    registry = Registry()
    for kind in KINDS:
        hook = f"register_{kind}s"
        for impl in reversed(getattr(plugins.manager.hook, hook).get_hookimpls()):  # last-registered first
            record = plugins.records[impl.plugin_name]
            if record.error:
                continue
            register = Register(registry, kind, impl.plugin_name, record.dist, record.version)
            try:
                plugins.call(impl.plugin_name, hook, register=register)
            except Exception as exc:
                plugins.fail(impl.plugin_name, record.module, exc, dist=record.dist, version=record.version)
                registry.drop(impl.plugin_name)
    return registry


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


_current: tuple[Plugins, Registry] | None = None


def current(*, strict: bool = False) -> tuple[Plugins, Registry]:
    """The process-wide plugins and registry, built on first use (tests swap them with `use`); `strict`
    (`attribench --strict`) loads them strictly unless they were."""
    global _current
    if _current is None or (strict and not _current[0].strict):
        plugins = make_plugins(strict=strict or None)
        _current = (plugins, build_registry(plugins))
    return _current


def get_registry() -> Registry:
    return current()[1]


def use(plugins: Plugins | None) -> None:
    """Make `plugins` the process-wide set (None: rebuild from entry points on next use)."""
    global _current
    _current = None if plugins is None else (plugins, build_registry(plugins))
