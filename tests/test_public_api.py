"""The plugin API is what `attribench_core` exports: first-party plugins use nothing else, every exported
name resolves and is documented, and the core's modules import one another without cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import attribench_core

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted([*ROOT.glob("plugins/*/src/**/*.py"), *ROOT.glob("examples/*/src/**/*.py")], key=str)
TESTING = "attribench_core.testing"  # helpers for a plugin's tests, the one public submodule


def core_imports(tree: ast.AST, skip: frozenset[int] = frozenset()) -> Iterator[tuple[int, str, list[str]]]:
    """Each import of a core module in `tree` outside the nodes in `skip`: (line, module, names)."""
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attribench_core"):
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name, []) for a in node.names if a.name.startswith("attribench_core"))


def outside_the_api(path: Path) -> list[str]:
    """One line per import in `path` of something `attribench_core` does not export."""
    public = set(attribench_core.__all__)
    problems = []
    for line, module, names in core_imports(ast.parse(path.read_text())):
        where = f"{path.name}:{line}"
        if module == TESTING:
            continue
        if module != "attribench_core" or not names:
            problems.append(f"{where} imports {module}")
            continue
        problems += [f"{where} imports {name}, not exported" for name in names if name not in public]
    return problems


def test_first_party_plugins_import_only_the_public_api():
    assert len(PLUGIN_SOURCES) > 50
    problems = [problem for path in PLUGIN_SOURCES for problem in outside_the_api(path)]
    assert problems == []


def test_the_check_catches_an_internal_import(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "from attribench_core.store import AttributionStore\n"
        "from attribench_core import Metric, cli\n"
        "import attribench_core.runner\n"
        "from attribench_core.testing import plugin_registry\n"
    )
    assert outside_the_api(plugin) == [
        "plugin.py:1 imports attribench_core.store",
        "plugin.py:2 imports cli, not exported",
        "plugin.py:3 imports attribench_core.runner",
    ]


@pytest.mark.parametrize("name", attribench_core.__all__)
def test_every_exported_name_resolves_and_is_documented(name):
    assert getattr(attribench_core, name) is not None
    assert f"`{name}`" in (ROOT / "docs" / "plugins.md").read_text(), f"{name} is not in docs/plugins.md"


def module_graph() -> dict[str, set[str]]:
    """Which core modules each core module imports, at any depth of its code except `TYPE_CHECKING` blocks."""
    modules = {}
    for path in (ROOT / "attribench_core").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = frozenset(
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        )
        targets = set()
        for _, module, names in core_imports(tree, typing_only):
            targets |= {module, *(f"{module}.{n}" for n in names)}
        graph[name] = {t for t in targets if t in modules and t not in (name, "attribench_core")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle, once, as the path that closes it."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_core_modules_import_each_other_without_cycles():
    graph = module_graph()
    assert "attribench_core.recipe" in graph["attribench_core.training"]
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
