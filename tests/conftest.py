"""Shared fixtures: an isolated ATTRIBENCH_HOME (shared by the session so the toy model trains once),
and the test plugin `abfixture` (namespace `t`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attribench-home")


@pytest.fixture(autouse=True)
def isolated(cache_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTRIBENCH_HOME", str(cache_home))
    monkeypatch.delenv("ATTRIBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("ATTRIBENCH_STRICT_PLUGINS", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def test_plugins():
    """The CLI sees the core plugin plus `abfixture` as namespace `t` (no entry points)."""
    import abfixture.plugin

    from attribench_core.testing import using_plugins

    with using_plugins({"t": abfixture.plugin}) as registry:
        yield registry
