"""The plugin contract is documented: every hook with its arguments, every built-in in the docs."""

import inspect
from pathlib import Path

import pytest

from attribench_core import hookspecs
from attribench_core.testing import plugin_registry

DOCS = Path(__file__).parents[1] / "docs"


@pytest.mark.parametrize("name", [n for n in dir(hookspecs) if n.startswith("register_")])
def test_every_hook_is_documented_with_its_arguments(name):
    spec = getattr(hookspecs, name)
    signature = f"`{name}({', '.join(inspect.signature(spec).parameters)})`"
    assert signature in (DOCS / "plugins.md").read_text(), f"{signature} is missing from docs/plugins.md"


def test_every_builtin_is_documented():
    text = (DOCS / "core.md").read_text()
    for entry in plugin_registry().entries(plugin="core"):
        assert f"`{entry.qualified}`" in text, f"{entry.qualified} is missing from docs/core.md"
