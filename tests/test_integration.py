"""The core with the installed first-party methods plugin, through the real entry points."""

import json

import pytest
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.testing import using_plugins

pytest.importorskip("attribench_methods")


@pytest.fixture
def installed():
    with using_plugins(entrypoints=True) as registry:
        yield registry


def test_ig_localises_the_object_better_than_random_and_a_rerun_reads_the_store(installed):
    args = ["run", "core.relevance_mass", "-e", "ig", "-e", "random", "--num-imgs", "16", "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    by_name = {r["explainer"]: r for r in json.loads(first.stdout)["results"]}
    assert by_name["methods.ig"]["value"] > 0.5 > 0.1 > by_name["methods.random"]["value"]
    assert by_name["methods.ig"]["uncertainty"]["low"] > by_name["methods.random"]["uncertainty"]["high"]
    second = CliRunner().invoke(cli, args)
    assert json.loads(second.stdout)["results"] == json.loads(first.stdout)["results"]
    assert "0 attributions computed" in CliRunner().invoke(cli, args[:-1]).output


def test_every_installed_explainer_runs_end_to_end(installed):
    result = CliRunner().invoke(cli, ["run", "core.relevance_rank", "-e", "all", "--num-imgs", "4", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    expected = {"methods.ig", "methods.gradient", "methods.random", "methods.edge"}
    assert {r["explainer"] for r in rows} >= expected
    for row in rows:
        assert row["n"] + row["n_skipped"] == 4
