"""End to end on the `tiny` preset (gates lowered: a handful of images cannot train a gated model): the
metric through the CLI, the store, and `attribench smerf reproduce`."""

import json
import types

import pytest
from attribench_smerf import models, reproduction
from attribench_smerf.reproduction import LRP_EPSILON
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.explainer import Explainer
from attribench_core.hookspecs import hookimpl
from attribench_core.testing import using_plugins

pytest.importorskip("attribench_methods")


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "GATES", {"simple": 0.0, "complex": 0.0})
    with using_plugins(entrypoints=True):
        yield


def test_afl_on_two_settings_per_bucket_and_a_rerun_reads_the_store(tiny_study):
    args = ["run", "smerf.afl", "--setting", "simple", "--preset", "tiny", "-e", "edge", "-e", "random"]
    first = CliRunner().invoke(cli, [*args, "--num-imgs", "2", "--json"])
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["provenance"]["dataset_source"].startswith("smerf: TextBox images generated here after")
    rows = {r["explainer"]: r for r in payload["results"]}
    edge = rows["methods.edge"]
    # simple_fr and simple_nr, 2 of the 4 test images of every bucket; buckets without a primary object
    # (no PAFL) are counted as skipped
    table = edge["tables"]["buckets"]
    assert table["columns"] == ["setting", "bucket", "pafl", "safl", "n"]
    assert {row[0] for row in table["rows"]} == {"simple_fr", "simple_nr"}
    assert edge["n"] + edge["n_skipped"] == 2 * len(table["rows"])
    assert edge["n"] == sum(row[4] for row in table["rows"])
    for row in rows.values():
        assert 0 <= row["values"]["pafl_simple_min"] <= row["value"] <= 1
    second = CliRunner().invoke(cli, [*args, "--num-imgs", "2"])
    assert "; 0 attributions computed" in " ".join(second.output.split())


class Zeros(Explainer):
    """Abstains everywhere: an all-zero, hence constant, map."""

    def explain(self, model, inputs, targets):
        return inputs * 0


@hookimpl
def register_explainers(register):
    register("zeros", f"{__name__}:Zeros", description="all-zero maps")


def test_constant_maps_are_skipped_as_such_and_missing_primaries_as_such(tiny_study):
    """A constant map has no AFL (min-max divides 0 by 0): it is skipped as a constant map, not for a
    missing primary object, which only the buckets without one give (Simple-FR 1–6: no Box1)."""
    plugin = types.SimpleNamespace(register_explainers=register_explainers)
    with using_plugins({"test": plugin}, entrypoints=True):
        args = ["run", "smerf.afl", "--setting", "simple", "--preset", "tiny", "--num-imgs", "2", "--json"]
        result = CliRunner().invoke(
            cli, [*args, "--postprocess", "uniform", "-e", "test.zeros", "-e", "edge"]
        )
    assert result.exit_code == 0, result.output
    rows = {r["explainer"]: r for r in json.loads(result.stdout)["results"]}
    zeros, edge = rows["test.zeros"], rows["methods.edge"]
    # nothing scored: 2 images in each of Simple-FR's 12 buckets and Simple-NR's 8 (those with text)
    assert zeros["n_skipped"] == 40 and zeros["n"] == 0
    assert zeros["skipped_reasons"] == {
        "no primary object (pafl undefined)": 12,  # Simple-FR's 6 buckets without Box1
        "constant map (pafl undefined)": 28,
    }
    assert edge["skipped_reasons"] == {"no primary object (pafl undefined)": 12}


def test_reproduce_prints_the_table_beside_the_paper(tiny_study, monkeypatch, tmp_path):
    monkeypatch.setattr(reproduction, "METHODS", {"edge": "Edge", "random": "Random"})
    out = tmp_path / "study.json"
    result = CliRunner().invoke(
        cli, ["smerf", "reproduce", "--preset", "tiny", "--num-imgs", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "| Edge | " in result.stdout and "| Random | " in result.stdout
    assert "Random and Edge: simple mean PAFL ≤ 0.1" in result.stdout
    payload = json.loads(out.read_text())
    assert payload["options"]["setting"] == "all"
    assert {r["explainer"] for r in payload["results"]} == {"methods.edge", "methods.random"}


def test_reproduce_refuses_a_missing_out_folder_before_running(tiny_study, tmp_path):
    result = CliRunner().invoke(cli, ["smerf", "reproduce", "--out", str(tmp_path / "nowhere" / "x.json")])
    assert result.exit_code == 2 and "Folder of --out" in result.output
    assert not (tmp_path / "home").exists()  # nothing was generated or trained


def _values(simple_mean, simple_min, complex_mean, complex_min):
    return {
        "pafl_simple_mean": simple_mean,
        "pafl_simple_min": simple_min,
        "pafl_complex_mean": complex_mean,
        "pafl_complex_min": complex_min,
    }


def test_report_checks_the_papers_findings_by_hand():
    good = {name: _values(0.6, 0.4, 0.3, 0.05) for name in ("ig", LRP_EPSILON, "deeplift_rc")}
    good |= {"random": _values(0.03, 0.01, 0.02, 0.0), "edge": _values(0.05, 0.02, 0.04, 0.0)}
    results = [{"explainer": f"methods.{n}", "values": v} for n, v in good.items()]
    text = reproduction.report(results)
    assert "| IG | 0.60 (0.40) | 0.67 (0.46) | 0.30 (0.05) | 0.52 (0.06) |" in text
    with_interval = {**good["ig"], "pafl_complex_min_low": 0.012, "pafl_complex_min_high": 0.054}
    one = reproduction.report([{"explainer": "methods.ig", "values": with_interval}])
    assert "| IG | 0.60 (0.40) | 0.67 (0.46) | 0.30 (0.05 [0.01, 0.05]) | 0.52 (0.06) |" in one
    assert "| Gradient | – | 0.23 (0.14) | – | 0.18 (0.01) |" in text  # not run
    assert "does NOT hold" not in text
    good["ig"] = _values(0.45, 0.3, 0.5, 0.2)  # below 0.5 in simple, a complex bucket well explained
    verdicts = dict(reproduction.findings(reproduction.pafl_by_method(
        [{"explainer": f"methods.{n}", "values": v} for n, v in good.items()]
    )))  # fmt: skip
    assert [ok for ok in verdicts.values()] == [False, False, False, True]
