"""The checks' runs in `attribench report`: their columns in the method × metric matrix carry the category
and direction the runs saved, so the report needs only the store, not this plugin."""

import json

import attribench_checks.plugin
import attribench_methods.plugin
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.testing import using_plugins

PLUGINS = {"checks": attribench_checks.plugin, "methods": attribench_methods.plugin}
EXPLAINERS = ["-e", "gradient", "-e", "edge", "-e", "random"]


def test_complexity_runs_are_matrix_columns_of_their_category_ranked_in_their_direction(tmp_path):
    store = ["--store", str(tmp_path / "attribench.h5")]
    env = {"ATTRIBENCH_HOME": str(tmp_path / "home")}
    with using_plugins(PLUGINS):
        for metric in ("checks.sparseness", "checks.complexity"):
            ran = CliRunner().invoke(cli, ["run", metric, *EXPLAINERS, "--num-imgs", "6", *store], env=env)
            assert ran.exit_code == 0, ran.output
    with using_plugins({}):  # the report reads category and direction from the store alone
        exported = CliRunner().invoke(cli, ["report", "--format", "json", *store], env=env)
    assert exported.exit_code == 0, exported.output
    table = json.loads(exported.stdout)["matrix"]
    columns = [(c["name"], c["category"], c["direction"]) for c in table["columns"]]
    assert columns == [
        ("checks.complexity", "complexity", "lower"),
        ("checks.sparseness", "complexity", "higher"),
    ]
    ranks = {row["method"]: [cell["rank"] for cell in row["cells"]] for row in table["rows"]}
    # gradient maps are the most concentrated: least entropy and highest Gini; random ones the least
    assert ranks["methods.gradient"] == [1, 1] and ranks["methods.random"] == [3, 3]
