"""What plugins registered: entries keyed by qualified name (`namespace.name`), and name resolution.

Targets stay lazy (`"module:attr"` strings) until `Entry.load()`, so listing never imports heavy code. A
target may be registered with keyword arguments (`kwargs`), which `Entry.create` binds as
`functools.partial` would: one class serves several names (`bam.scene1` … `bam.scene10`).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from attribench_core.errors import AmbiguousNameError, PluginError, UnknownNameError

KINDS = ("dataset", "model", "explainer", "metric", "report", "executor")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
FIRST_PARTY = {
    "methods": "plugins/attribench_methods",
    "smerf": "plugins/attribench_smerf",
    "bam": "plugins/attribench_bam",
    "soco": "plugins/attribench_soco",
    "checks": "plugins/attribench_checks",
}


@dataclass
class Entry:
    """One registered dataset, model, explainer, metric, report section or executor."""

    kind: str
    namespace: str
    name: str
    target: Any
    description: str = ""
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)  # bound to the target by `create`
    origin: str = ""
    dist: str | None = None
    version: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"

    def load(self) -> Any:
        """The registered class or factory, importing a lazy `"module:attr"` target on first use."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                self.target = getattr(import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"{self.kind} {self.qualified}: cannot load target '{module_name}:{attr}' ({exc})."
                ) from exc
        return self.target

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """The target called with its registered `kwargs` and these arguments (given keywords win, as with
        `functools.partial`): the model, explainer, metric or executor instance, the dataset, the report
        sections."""
        return self.load()(*args, **{**self.kwargs, **kwargs})

    def summary(self) -> str:
        """First line of the description."""
        return (self.description or "(no description)").strip().splitlines()[0]


class Registry:
    """All entries of all loaded plugins."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def add(self, entry: Entry) -> None:
        for text in (entry.name, *entry.aliases):
            if not NAME_RE.match(text):
                raise PluginError(
                    f"{entry.kind} name '{text}' registered at {entry.origin} must match {NAME_RE.pattern}."
                )
        taken = self._entries[entry.kind]
        for text in (entry.name, *entry.aliases):
            clash = self._find(entry.kind, f"{entry.namespace}.{text}")
            if clash is not None:
                raise PluginError(
                    f"{entry.kind} '{entry.namespace}.{text}' registered twice: "
                    f"at {clash.origin} and at {entry.origin}."
                )
        taken[entry.qualified] = entry

    def drop(self, namespace: str) -> None:
        """Forget everything a plugin registered (used when one of its hooks fails half-way)."""
        for entries in self._entries.values():
            for qualified in [q for q, e in entries.items() if e.namespace == namespace]:
                del entries[qualified]

    def _find(self, kind: str, qualified: str) -> Entry | None:
        entries = self._entries[kind]
        if qualified in entries:
            return entries[qualified]
        namespace, _, short = qualified.partition(".")
        return next((e for e in entries.values() if e.namespace == namespace and short in e.aliases), None)

    def entries(self, kind: str | None = None, plugin: str | None = None) -> list[Entry]:
        kinds = KINDS if kind is None else (kind,)
        found = [e for k in kinds for e in self._entries[k].values()]
        return [e for e in found if plugin is None or e.namespace == plugin]

    def resolve(self, kind: str, text: str) -> Entry:
        """Exact qualified name or alias; else a unique short name or alias; else a helpful error."""
        exact = self._find(kind, text) if "." in text else None
        if exact is not None:
            return exact
        if "." not in text:
            hits = [e for e in self._entries[kind].values() if text == e.name or text in e.aliases]
            if len(hits) == 1:
                return hits[0]
            if hits:
                choices = " and ".join(sorted(e.qualified for e in hits))
                raise AmbiguousNameError(
                    f"{kind.capitalize()} '{text}' is provided by {choices}; use the qualified name."
                )
        raise UnknownNameError(self._unknown_message(kind, text))

    def _unknown_message(self, kind: str, text: str) -> str:
        entries = self._entries[kind].values()
        names = sorted(
            {e.qualified for e in entries} | {f"{e.namespace}.{a}" for e in entries for a in e.aliases}
        )
        short = {n.partition(".")[2]: n for n in names}
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
        close += [short[s] for s in difflib.get_close_matches(text, list(short), n=3, cutoff=0.6)]
        message = f"Unknown {kind} '{text}'."
        if close:
            message += f" Did you mean {', '.join(dict.fromkeys(close))}?"
        namespace = text.partition(".")[0] if "." in text else ""
        if namespace in FIRST_PARTY and not any(e.namespace == namespace for e in entries):
            message += f" The '{namespace}' plugin is not installed: pip install -e {FIRST_PARTY[namespace]}."
        return message + f" Run `attribench list {kind}s` to see all {len(self._entries[kind])}."


class Register:
    """The `register` callback handed to a plugin's hooks, bound to one kind and the plugin's namespace.

    `registry` is the registry being built: a target that resolves other names when it is created binds
    it (`kwargs={"registry": register.registry}`); by then every plugin has registered.
    """

    def __init__(self, registry: Registry, kind: str, namespace: str, dist: str | None, version: str | None):
        self.registry, self.kind, self.namespace = registry, kind, namespace
        self._dist, self._version = dist, version

    def __call__(
        self,
        name: str,
        target: Any,
        *,
        description: str = "",
        aliases: Iterable[str] = (),
        kwargs: Mapping[str, Any] | None = None,
        **meta: Any,
    ) -> None:
        """Register `target` as `namespace.name`; `kwargs` are bound to it (see `Entry.create`), `meta` is
        shown by `attribench list` (e.g. `category="ground_truth"`, `available=False`)."""
        caller = sys._getframe(1)
        if not description and not isinstance(target, str):
            description = (target.__doc__ or "").strip()
        self.registry.add(
            Entry(
                kind=self.kind,
                namespace=self.namespace,
                name=name,
                target=target,
                description=description,
                aliases=tuple(aliases),
                meta=meta,
                kwargs=dict(kwargs or {}),
                origin=f"{caller.f_code.co_filename}:{caller.f_lineno}",
                dist=self._dist,
                version=self._version,
            )
        )
