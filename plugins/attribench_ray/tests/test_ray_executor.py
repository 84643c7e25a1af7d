"""The Ray executor on a local 2-CPU cluster: runs equal to `core.local` (results and stored maps, bit for
bit) with 1 and 2 workers, failures reported per explainer, dead workers retried then reported, its
options checked, and a killed driver resuming to the same results.

Workers are separate processes that find the plugins by entry points: the test plugin `t` is installed into
a temporary site folder on PYTHONPATH, which the workers see, with the driver's ATTRIBENCH_HOME."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import abfixture.plugin  # noqa: E402
import attribench_ray.plugin  # noqa: E402
from attribench_ray.executor import RETRIES, RayExecutor, WorkerDied, worker_environment  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from subprocess_cli import FIXTURES, fake_install, run_attribench  # noqa: E402

from attribench_core.cli import cli  # noqa: E402
from attribench_core.errors import ParameterError  # noqa: E402
from attribench_core.executor import Failed  # noqa: E402
from attribench_core.plugins import get_registry  # noqa: E402
from attribench_core.runner import RunRequest, prepare  # noqa: E402
from attribench_core.store import AttributionStore, GroupKey  # noqa: E402
from attribench_core.testing import using_plugins  # noqa: E402

pytestmark = pytest.mark.slow


def _install_plugins(site: Path) -> None:
    """`t` (the test plugin), and `ray` where this plugin is not pip-installed (then it is on PYTHONPATH)."""
    fake_install(site, "attribench-fixture", {"t": "abfixture.plugin"})
    try:
        importlib.metadata.distribution("attribench-ray")
    except importlib.metadata.PackageNotFoundError:
        fake_install(site, "attribench-ray", {"ray": "attribench_ray.plugin"})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    _install_plugins(site)
    return site


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attribench-home")


@pytest.fixture(scope="module")
def cluster(site: Path, home: Path) -> Iterator[None]:
    """One local 2-CPU Ray cluster for the in-process tests (the executor uses a cluster already started);
    its workers see the plugins and the cache through the driver's environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTRIBENCH_HOME", str(home))
        patch.setenv(
            "PYTHONPATH", os.pathsep.join([str(site), str(FIXTURES), os.environ.get("PYTHONPATH", "")])
        )
        patch.delenv("ATTRIBENCH_DISABLE_PLUGINS", raising=False)
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": worker_environment()},
        )
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture
def in_cluster(cluster: None, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The driver in this process: the cluster's cache, a fresh folder, and plugins `t` and `ray`."""
    monkeypatch.setenv("ATTRIBENCH_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with using_plugins({"t": abfixture.plugin, "ray": attribench_ray.plugin}):
        yield


def _run(store: str, *args: str) -> dict:
    base = ["run", "core.relevance_mass", "-e", "t.grad", "-e", "t.noise", "--num-imgs", "24", "--batch-size"]
    result = CliRunner().invoke(cli, [*base, "4", "--store", store, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _maps(path: str | Path) -> dict[str, np.ndarray]:
    store = AttributionStore(path)
    keys = [GroupKey(*g["path"].split("/")[1:]) for g in store.groups() if g["kind"] == "attributions"]
    return {key.path: store.read(key, store.completed(key)).attribution for key in keys}


def _assert_same_maps(path: str | Path, reference: str | Path) -> None:
    maps, expected = _maps(path), _maps(reference)
    assert maps.keys() == expected.keys() and maps
    for key, values in expected.items():
        assert np.array_equal(maps[key], values), key


def test_one_and_two_ray_workers_give_the_results_and_maps_of_core_local(in_cluster):
    local = _run("local.h5")
    for workers in ("1", "2"):  # 2 threads each, then 1 thread each (the driver has torch's default)
        distributed = _run(f"ray{workers}.h5", "--executor", "ray", "--workers", workers)
        assert distributed["results"] == local["results"]
        _assert_same_maps(f"ray{workers}.h5", "local.h5")


def test_an_explainer_failing_on_a_ray_worker_is_reported_and_the_others_go_on(in_cluster):
    args = ["run", "core.relevance_mass", "-e", "t.grad", "-e", "t.broken", "--num-imgs", "8", "--batch-size"]
    result = CliRunner().invoke(cli, [*args, "4", "--executor", "ray", "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["explainer"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["t.grad"]["n"] == 8
    reasons = rows["t.broken"]["skipped_reasons"]
    assert any("ValueError: this model has a layer I cannot handle" in reason for reason in reasons)


class Unpicklable(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")


def _square_or_die(ctx: object, item: tuple[str, int, str]) -> int:
    """Items `("ok", n, folder)` give n², `("raise", ...)` raise an exception that does not unpickle,
    `("die", ...)` end the worker's process, and `("die once", ...)` end it on the first try only (a marker
    file in `folder` remembers)."""
    kind, n, folder = item
    marker = Path(folder, f"died-{n}")
    if kind == "raise":
        raise Unpicklable(n)
    if kind == "die" or (kind == "die once" and not marker.exists()):
        marker.touch()
        os._exit(1)
    return n * n


def test_dead_workers_are_replaced_and_their_items_retried_then_reported(in_cluster, tmp_path):
    ctx = prepare(get_registry(), RunRequest("core.relevance_mass", ["t.grad"], num_imgs=4))
    kinds = [("ok", 2), ("die once", 3), ("raise", 4), ("die", 5), ("ok", 6)]
    items = [(kind, n, str(tmp_path)) for kind, n in kinds]
    with RayExecutor(workers=2) as executor:
        outcomes = dict(executor.map(_square_or_die, items, ctx))
        assert [outcomes[p] for p in (0, 1, 4)] == [4, 9, 36]
        assert isinstance(outcomes[2], Failed) and outcomes[2].reason == "Unpicklable: code 4"
        assert isinstance(outcomes[3], Failed) and isinstance(outcomes[3].error, WorkerDied)
        assert f"{RETRIES + 1} tries" in outcomes[3].reason
        assert len(executor.actors) == 2  # the dead ones replaced
        assert dict(executor.map(_square_or_die, [("ok", 7, str(tmp_path))], ctx)) == {0: 49}


def test_nothing_to_compute_starts_no_cluster():
    executor = RayExecutor()
    assert list(executor.map(_square_or_die, [], ctx=None)) == [] and not executor.actors


def test_listing_plugins_does_not_import_ray(site):
    code = "import sys; from attribench_core.cli import cli; cli(['list'], standalone_mode=False); "
    listed = subprocess.run(
        [sys.executable, "-c", code + "print('ray' in sys.modules)"],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(site), str(FIXTURES), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
    )
    assert "ray.ray" in listed.stdout and listed.stdout.strip().endswith("False"), listed.stderr


def test_ray_options_are_checked_before_anything_starts():
    with pytest.raises(ParameterError, match="Did you mean address"):
        RayExecutor(adress="localhost:6379")
    with using_plugins({"t": abfixture.plugin, "ray": attribench_ray.plugin}):
        result = CliRunner().invoke(
            cli, ["run", "core.relevance_mass", "--executor", "ray", "--ray-adress", "x"]
        )
    assert result.exit_code == 2 and "Did you mean address" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _resumable_args(store: Path) -> list[str]:
    return ["run", "core.relevance_mass", "-e", "t.grad:delay=0.15", "-e", "t.noise", "--num-imgs", "48",
            "--batch-size", "4", "--store", str(store), "--json"]  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """The processes started by `pid`, and theirs (Linux's /proc)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in map(int, children.read_text().split()):
            found += [child, *_descendants(child)]
    return found


def test_a_killed_ray_run_resumes_to_the_results_of_core_local(site, home, tmp_path):
    """The driver (which started its own local cluster) is killed mid-run; the rerun adopts the journalled
    batches, computes the rest on fresh workers and ends with core.local's results and maps."""
    env = {"ATTRIBENCH_HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    reference = run_attribench(_resumable_args(tmp_path / "local.h5"), site=site, env=env)
    assert reference.returncode == 0, reference.stderr

    store = tmp_path / "killed.h5"
    args = [*_resumable_args(store), "--executor", "ray", "--workers", "2"]
    paths = os.pathsep.join([str(site), str(FIXTURES), os.environ.get("PYTHONPATH", "")])
    code = "import sys; from attribench_core.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env, "PYTHONPATH": paths},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = tmp_path / "killed.h5.journal"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(journal.glob("*/*.npz"))) < 3:
        time.sleep(0.05)
    cluster = _descendants(proc.pid)  # Ray's agents outlive a killed driver: ended below
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pid in cluster:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert 3 <= len(list(journal.glob("*/*.npz"))) < 12  # killed mid-way through the first explainer

    resumed = run_attribench(args, site=site, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["results"] == json.loads(reference.stdout)["results"]
    _assert_same_maps(store, tmp_path / "local.h5")
    verified = run_attribench(["store", "verify", "--store", str(store)], site=site)
    assert verified.returncode == 0 and verified.stdout.strip().endswith("OK")
