"""The plugin contract is documented: every hook with its arguments, every built-in in the docs; the README's
quickstart is the two make commands that `.ci/run` runs."""

import inspect
import os
import shutil
import subprocess
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


ROOT = Path(__file__).parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def quickstart_commands() -> list[str]:
    """The command lines between the README's quickstart markers, as `.ci/run` reads them."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- quickstart -->")[1].split("<!-- /quickstart -->")[0]
    return [line for line in block.splitlines() if line.startswith("make")]


def planned(*args: str) -> list[str]:
    """What `make ARGS` would run, without running it (`make -n`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VENV", "PYTHON", "MAKEFLAGS")}
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, env=env, check=True
    )
    return [line for line in done.stdout.splitlines() if not line.startswith("make")]


def test_the_quickstart_is_the_two_make_commands_ci_runs():
    assert quickstart_commands() == ["make run", "make test"]
    assert '| grep -E "^make( |$)")' in (ROOT / ".ci" / "run").read_text()


@needs_make
def test_make_sets_up_a_virtual_environment_once_then_runs(tmp_path):
    venv = tmp_path / "venv"
    setup = [
        f"test -x {venv}/bin/python || python3 -m venv {venv}",
        f"{venv}/bin/python -m pip install -r requirements.txt",
        f"touch {venv}/.attribench-installed",
    ]
    headline = f"{venv}/bin/python -m attribench_core run bam.mcs --explainer=ig"
    assert planned("run", f"VENV={venv}") == [*setup, headline]
    venv.mkdir()
    (venv / ".attribench-installed").touch()  # installed after requirements.txt last changed: reused
    assert planned("test", f"VENV={venv}") == [f"{venv}/bin/python -m pytest"]
    os.utime(venv / ".attribench-installed", (0, 0))  # requirements.txt changed since: installed again
    assert planned("test", f"VENV={venv}") == [*setup, f"{venv}/bin/python -m pytest"]


@needs_make
def test_make_with_your_own_python_installs_nothing():
    assert planned("run", "PYTHON=/opt/env/bin/python") == [
        "/opt/env/bin/python -m attribench_core run bam.mcs --explainer=ig"
    ]
    assert planned("test", "PYTHON=/opt/env/bin/python") == ["/opt/env/bin/python -m pytest"]
