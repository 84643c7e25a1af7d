"""The command line: listing without torch, runs and their JSON contract, resume, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from subprocess_cli import FIXTURES, fake_install, run_attribench

from attribench_core.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_list_json_does_not_import_torch():
    code = (
        "import sys, json; from click.testing import CliRunner; from attribench_core.cli import cli; "
        "r = CliRunner().invoke(cli, ['list', '--json']); rows = json.loads(r.output); "
        "print(len(rows), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) >= 5
    assert out[1] == "False"


def test_list_rows_follow_the_contract(test_plugins):
    rows = json.loads(invoke("list", "explainers", "--json").stdout)
    assert {
        "name": "t.noise",
        "kind": "explainer",
        "plugin": "t",
        "description": "U[0,1) noise from the run's generator",
        "aliases": ["rnd"],
    } in rows
    verbose = json.loads(invoke("list", "metrics", "--json", "-v").stdout)
    mass = next(r for r in verbose if r["name"] == "core.relevance_mass")
    assert mass["higher_is_better"] is True
    assert mass["options"] == {"reduction": "positive"}


def test_list_filters_metrics_by_their_registered_category(test_plugins):
    rows = json.loads(invoke("list", "--category", "ground_truth", "--json").stdout)
    assert {r["name"] for r in rows} == {"core.relevance_mass", "core.relevance_rank", "core.pointing_game"}
    unknown = invoke("list", "metrics", "--category", "groundtruth")
    assert unknown.exit_code == 2
    assert "No metric of category 'groundtruth'; categories: ground_truth." in unknown.output


def test_every_installed_metric_registers_the_category_its_class_declares():
    """`--category` filters on what was registered, without importing: it must match the class."""
    from attribench_core import get_registry

    metrics = get_registry().entries("metric")
    assert len(metrics) > 10
    assert [m.qualified for m in metrics if m.meta.get("category") != m.load().category] == []


def test_run_json_contract_and_second_run_reads_the_store(test_plugins):
    args = [
        "run",
        "core.relevance_mass",
        "-e",
        "t.grad",
        "-e",
        "rnd",
        "--num-imgs",
        "24",
        "--batch-size",
        "8",
        "--json",
        "--out",
        "result.json",
    ]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["metric"] == "core.relevance_mass"
    assert payload["options"] == {"reduction": "positive"} and payload["higher_is_better"] is True
    by_name = {r["explainer"]: r for r in payload["results"]}
    assert set(by_name) == {"t.grad", "t.noise"}
    grad, noise = by_name["t.grad"], by_name["t.noise"]
    keys = {"explainer", "value", "values", "tables", "uncertainty", "n", "small_n", "n_skipped"}
    keys.add("skipped_reasons")
    assert set(grad) == keys
    assert grad["n"] == 24 and grad["n_skipped"] == 0
    assert grad["uncertainty"]["kind"] == "bootstrap_ci95"
    assert grad["uncertainty"]["low"] <= grad["value"] <= grad["uncertainty"]["high"]
    assert grad["value"] > noise["uncertainty"]["high"]  # the gradient localises the object, noise does not
    assert 0.03 < noise["value"] < 0.1  # noise spreads mass evenly: 64/1024 of the pixels are the object
    assert payload["provenance"]["seed"] == 0 and "attribench" in payload["provenance"]["versions"]
    assert json.loads(Path("result.json").read_text()) == payload

    second = invoke(*args)
    assert json.loads(second.stdout)["results"] == payload["results"]
    assert payload["provenance"]["dataset_source"].startswith("core.toy: generated")
    table = invoke(*args[:-3])
    assert "0 attributions computed" in table.output
    assert "core.toy: generated" in table.output  # the data's source under the title
    assert "24*" in table.output and "n < 30" in table.output  # too few images for the interval: said so
    assert "interval: bootstrap_ci95" in table.output


def test_a_failing_explainer_is_reported_and_the_others_go_on(test_plugins):
    result = invoke(
        "run", "core.relevance_mass", "-e", "t.grad", "-e", "t.broken", "--num-imgs", "8", "--json"
    )
    assert result.exit_code == 0, result.output
    rows = {r["explainer"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["t.grad"]["n"] == 8
    assert rows["t.broken"]["value"] is None
    assert rows["t.broken"]["skipped_reasons"] == {
        "explainer failed: ValueError: this model has a layer I cannot handle": 8
    }
    alone = invoke("run", "core.relevance_mass", "-e", "t.broken", "--num-imgs", "8")
    assert alone.exit_code == 1
    assert "Error: Every explainer failed; t.broken: ValueError: this model has a layer" in alone.output


def test_a_batch_that_runs_out_of_memory_is_split(test_plugins):
    args = ["run", "core.relevance_mass", "--num-imgs", "12", "--batch-size", "8", "--json"]
    greedy = json.loads(invoke(*args, "-e", "t.greedy").stdout)["results"][0]
    plain = json.loads(invoke(*args, "-e", "t.grad", "--store", "other.h5").stdout)["results"][0]
    assert greedy["n"] == 12
    assert greedy["value"] == pytest.approx(plain["value"], rel=1e-6)


def test_seed_changes_the_sampled_images_and_the_noise(test_plugins):
    base = ["run", "core.relevance_mass", "-e", "t.noise", "--num-imgs", "8", "--json"]
    a, b = (json.loads(invoke(*base, "--seed", s).stdout)["results"][0]["value"] for s in ("0", "1"))
    assert a != b


def test_metric_options_are_passed_and_checked(test_plugins):
    ok = invoke("run", "core.pointing_game", "-e", "t.grad", "--num-imgs", "8", "--tolerance", "3", "--json")
    assert json.loads(ok.stdout)["options"] == {"reduction": "positive", "tolerance": 3, "average": "images"}
    bad = invoke("run", "core.pointing_game", "-e", "t.grad", "--tolerence", "3")
    assert bad.exit_code == 2
    assert "Unknown option 'tolerence' for core.pointing_game. Did you mean tolerance?" in bad.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["run", "core.relevance_mas", "-e", "t.grad"],
            2,
            "Usage error: Unknown metric 'core.relevance_mas'. Did you mean core.relevance_mass",
        ),
        (
            ["run", "core.relevance_mass", "-e", "gard"],
            2,
            "Usage error: Unknown explainer 'gard'. Did you mean t.grad",
        ),
        (
            ["run", "core.relevance_mass", "-e", "t.grad:delay"],
            2,
            "Usage error: Malformed parameter 'delay' for t.grad",
        ),
        (
            ["run", "core.relevance_mass", "-e", "t.grad:delay=soon"],
            2,
            "Parameter 'delay' expects float, got 'soon'",
        ),
        (
            ["run", "core.relevance_mass", "--store", "nowhere/s.h5"],
            1,
            "Error: Store folder 'nowhere' does not exist; create it or pass another --store.",
        ),
        (["run", "core.relevance_mass", "--device", "tpu"], 2, "Unknown device 'tpu'"),
        (
            ["run", "core.relevance_mass", "--num-imgs", "0", "-e", "t.grad"],
            2,
            "--num-imgs must be at least 1",
        ),
        (["run", "core.relevance_mass", "stray"], 2, "Unexpected argument 'stray'"),
        (
            ["run", "core.pointing_game", "-e", "t.grad", "--tolerance", "-1"],
            2,
            "Parameter 'tolerance' must be at least 0; got -1.",
        ),
        (
            ["run", "core.relevance_mass", "-e", "t.grad:delay=0,delay=1"],
            2,
            "Parameter 'delay' given twice for t.grad (0 and 1): give it once.",
        ),
        (["store", "ls", "--store", "none.h5"], 2, "No store at 'none.h5'"),
    ],
)
def test_bad_input_gives_one_line_errors(test_plugins, args, code, message):
    result = invoke(*args)
    assert result.exit_code == code
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_store_commands(test_plugins, tmp_path):
    invoke("run", "core.relevance_mass", "-e", "t.grad", "--num-imgs", "4")
    groups = json.loads(invoke("store", "ls", "--json").stdout)
    group = next(g["path"] for g in groups if g["kind"] == "attributions")
    maps = next(g for g in groups if g["kind"] == "attributions")
    assert maps["bytes"] > 4 * 3 * 32 * 32 * 4  # four float32 maps [3,32,32] at least, in bytes on disk
    assert all(g["bytes"] > 0 for g in groups)
    assert f"{maps['bytes']:,} bytes" in invoke("store", "ls").output
    assert json.loads(invoke("store", "show", group).stdout)["explainer"] == "t.grad"
    assert invoke("store", "verify").output.strip() == "attribench.h5: OK"
    exported = invoke("store", "export", group, str(tmp_path / "g.npz"))
    assert exported.exit_code == 0 and (tmp_path / "g.npz").exists()
    before = (tmp_path / "g.npz").read_bytes()
    again = invoke("store", "export", group, str(tmp_path / "g.npz"))
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert (tmp_path / "g.npz").read_bytes() == before  # nothing overwritten
    assert invoke("store", "export", group, str(tmp_path / "g.npz"), "--force").exit_code == 0
    short = invoke("store", "export", "t.grad", str(tmp_path / "short.npz"))  # the name a user sees
    assert short.exit_code == 0, short.output
    assert (tmp_path / "short.npz").read_bytes() == before
    assert json.loads(invoke("store", "show", "core.toy/core.toy_cnn/t.grad").stdout)["explainer"] == "t.grad"
    invoke("run", "core.relevance_mass", "-e", "t.grad:delay=0.001", "--num-imgs", "4")
    ambiguous = invoke("store", "export", "t.grad", str(tmp_path / "x.npz"))
    assert ambiguous.exit_code == 1 and "names 2 groups" in ambiguous.output
    assert invoke("store", "show", "t.nothing").exit_code == 1


def test_num_imgs_above_the_dataset_size_says_it_was_capped(test_plugins):
    done = CliRunner().invoke(
        cli, ["run", "core.relevance_mass", "-e", "t.grad", "--num-imgs", "100000", "--json"]
    )
    assert done.exit_code == 0, done.output
    evaluated = json.loads(done.stdout)["provenance"]["num_imgs"]
    assert evaluated < 100000
    assert f"note: --num-imgs 100000 capped at the dataset's {evaluated} images." in done.stderr


@pytest.mark.parametrize("seed", ["-1", str(2**32), "9" * 23])
def test_a_seed_outside_the_supported_range_is_refused_before_anything_runs(test_plugins, seed):
    """numpy takes no negative seed and torch none from 2**64, and plugins seed with multiples of the seed:
    0 .. 2**32 - 1 is what every stream supports."""
    refused = invoke("run", "core.relevance_mass", "-e", "t.grad", "--num-imgs", "4", "--seed", seed)
    assert refused.exit_code == 2
    assert (
        refused.output
        == f"Usage error: --seed {seed} is outside the supported range 0 to 4294967295 (2**32 - 1).\n"
    )
    assert not Path("attribench.h5").exists()


def test_the_largest_supported_seed_runs_and_is_kept_in_the_store(test_plugins):
    top = invoke("run", "core.relevance_mass", "-e", "t.grad", "--num-imgs", "4", "--seed", str(2**32 - 1))
    assert top.exit_code == 0, top.output
    listed = json.loads(invoke("store", "ls", "--json").stdout)
    group = next(g["path"] for g in listed if g["kind"] == "attributions")
    assert json.loads(invoke("store", "show", group).stdout)["seed"] == 2**32 - 1


def _resumable_args(store):
    return ["run", "core.relevance_mass", "-e", "t.grad:delay=0.15", "-e", "t.noise", "--num-imgs", "48",
            "--batch-size", "4", "--store", str(store), "--json"]  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_results(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-fixture", {"t": "abfixture.plugin"})
    reference = run_attribench(_resumable_args(tmp_path / "reference.h5"), site=site)
    assert reference.returncode == 0, reference.stderr

    store = tmp_path / "killed.h5"
    args = _resumable_args(store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(FIXTURES)])}
    code = "import sys; from attribench_core.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    journal = tmp_path / "killed.h5.journal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(journal.glob("*/*.npz"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 3 <= len(list(journal.glob("*/*.npz"))) < 12  # killed mid-way through the first explainer

    resumed = run_attribench(args, site=site)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["results"] == json.loads(reference.stdout)["results"]
    verified = run_attribench(["store", "verify", "--store", str(store)], site=site)
    assert verified.returncode == 0 and verified.stdout.strip().endswith("OK")


@pytest.mark.slow
def test_two_processes_writing_one_store_leave_it_sound(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "attribench-fixture", {"t": "abfixture.plugin"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(FIXTURES)])}
    code = "import sys; from attribench_core.cli import main; main()"
    store = tmp_path / "shared.h5"
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "run",
                "core.relevance_mass",
                "-e",
                explainer,
                "-e",
                "t.noise",
                "--num-imgs",
                "40",
                "--batch-size",
                "4",
                "--store",
                str(store),
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for explainer in ("t.grad:delay=0.02", "t.grad:delay=0.03")
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    noise = [next(r for r in json.loads(out)["results"] if r["explainer"] == "t.noise") for out, _ in outputs]
    assert noise[0] == noise[1]
    verified = run_attribench(["store", "verify", "--store", str(store)], site=site)
    assert verified.returncode == 0, verified.stdout
    groups = json.loads(run_attribench(["store", "ls", "--json", "--store", str(store)], site=site).stdout)
    assert sorted(g["n"] for g in groups if g["kind"] == "attributions") == [40, 40, 40]


def test_run_metric_help_describes_the_metric(test_plugins):
    shown = invoke("run", "core.pointing_game", "--help")
    assert shown.exit_code == 0, shown.output
    metric = shown.output[shown.output.index("Metric core.pointing_game:") :]
    for line in (
        "Whether the most attributed pixel lies inside the primary regions",
        "direction   higher is better",
        "dataset     core.toy (--dataset)",
        "model       core.toy_cnn (--model)",
        "images      100 (--num-imgs)",
        "explainers  every installed explainer (--explainer)",
        "Options of core.pointing_game (--name value, after the metric):",
    ):
        assert line in metric
    flat = " ".join(metric.split())
    assert "--tolerance INTEGER pixels of slack around the regions (square) [default: 0; at least 0]" in flat
    assert (
        "--average TEXT mean over images, or over categories (Zhang et al.) [default: images; one of" in flat
    )
    assert "--num-imgs INTEGER" in shown.output  # the run command's own options come first


def test_run_help_without_a_metric_is_the_generic_help_and_an_unknown_metric_is_refused(test_plugins):
    generic = invoke("run", "--help")
    assert generic.exit_code == 0 and "Metric " not in generic.output
    unknown = invoke("run", "core.pointing_gam", "--help")
    assert unknown.exit_code == 2
    assert unknown.output.startswith("Usage error: Unknown metric 'core.pointing_gam'. Did you mean")


def test_debug_may_follow_the_subcommand(test_plugins):
    """`--debug` belongs to the root but is accepted anywhere before `--`: a failure then shows its
    traceback instead of one line."""
    args = ("run", "core.relevance_mass", "-e", "t.broken", "--num-imgs", "2")
    quiet = invoke(*args)
    assert quiet.exit_code == 1 and "Traceback" not in quiet.output
    loud = invoke(*args, "--debug")
    assert loud.exit_code != 0 and "No such option" not in loud.output
    assert loud.exception is not None and "cannot handle" in str(loud.exception)
