"""The Ray executor: a run's work items computed by Ray actors (one per device slot), on a local cluster that
it starts, or on a cluster that it joins (`--ray-address`).

Each actor builds the run's context once (`worker_context`: datasets and models from the registry and the
cache, never sent), computes `work(ctx, item)` and returns the value, or a `Failed` whose exception pickles.
The driver keeps a bounded number of items in flight, consumes the items lazily, yields outcomes as they
arrive and retries the item of a worker that died on a fresh one before reporting it failed.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError

from attribench_core import Executor, Failed, Param, UsageProblem, Work, attempt, worker_context

if TYPE_CHECKING:
    from attribench_core import RunContext, RunRequest

IN_FLIGHT_PER_WORKER = 2  # enough to keep a worker busy while its last value travels back
RETRIES = 2  # an item whose worker died is tried on this many fresh workers before it is reported failed
START_TIMEOUT_S = 120.0  # workers that cannot be placed (too few CPUs or GPUs) would otherwise wait forever
FORWARDED_ENV = ("ATTRIBENCH_HOME", "PYTHONPATH", "ATTRIBENCH_DISABLE_PLUGINS", "ATTRIBENCH_STRICT_PLUGINS")


class WorkerDied(RuntimeError):
    """A Ray worker died (crashed, killed, out of memory) while computing an item, on every try."""


@dataclass(frozen=True)
class Slot:
    """What one worker gets: CPUs reserved (torch threads), GPUs, and the device it computes on."""

    cpus: float
    threads: int
    gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"  # Ray shows an actor only its own GPUs


def portable(error: BaseException) -> BaseException:
    """`error` if it comes back from pickling as itself, else a stand-in with the same type name and message
    (an exception whose `__init__` takes other arguments than its message unpickles wrong, or not at all)."""
    try:
        copy = pickle.loads(pickle.dumps(error))
        if type(copy) is type(error) and str(copy) == str(error):
            return error
    except Exception:
        pass
    stand_in = type(type(error).__name__, (Exception,), {"__module__": type(error).__module__})
    return stand_in(str(error))


@ray.remote
class Worker:
    """One device slot: computes items in the context of the run it is sent (built once per run)."""

    def __init__(self, threads: int, device: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.device = device

    def ready(self) -> bool:
        return True

    def compute(self, work: Work, item: Any, request: RunRequest) -> Any:
        try:
            ctx = worker_context(replace(request, device=self.device))
        except Exception as exc:
            return Failed(portable(exc))
        outcome = attempt(work, ctx, item)
        return Failed(portable(outcome.error)) if isinstance(outcome, Failed) else outcome


def worker_environment() -> dict[str, str]:
    """The driver's variables that a local cluster's workers must see: the cache and the plugins."""
    return {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}


class RayExecutor(Executor):
    """Ray actors, one per device slot: `--workers` (default: the cluster's CPUs, or its GPUs divided by
    `--gpus-per-worker`); the workers share the cluster's CPUs out as torch threads (or `--ray-threads`)."""

    options = (
        Param(
            "address",
            "",
            "Ray cluster to join (ray start --head prints it; 'auto': the one on this machine); "
            "empty: start a local cluster",
            str,
        ),
        Param("threads", 0, "torch threads of each worker, and the CPUs it reserves (0: its share)", int),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.opts["threads"] < 0:
            raise UsageProblem(
                f"--ray-threads must be at least 0 (0: a worker's share); got {self.opts['threads']}."
            )
        self.started_ray = False
        self.actors: list[Any] = []
        self.slot: Slot | None = None

    # -- the cluster and its workers ----------------------------------------------------------------

    def _connect(self) -> None:
        if ray.is_initialized():  # a cluster this process already uses (a test's, a notebook's)
            return
        quiet = {"log_to_driver": False, "include_dashboard": False, "logging_level": logging.ERROR}
        if self.opts["address"]:
            ray.init(address=self.opts["address"], **quiet)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing sent anywhere
            ray.init(
                address="local",  # a new cluster, even where `ray start` left one running
                num_cpus=max(os.cpu_count() or 1, self.workers or 1),
                _node_ip_address="127.0.0.1",  # no network needed
                runtime_env={"env_vars": worker_environment()},
                **quiet,
            )
        self.started_ray = True

    def _plan(self, device: str) -> tuple[int, Slot]:
        """The number of workers and each one's slot, from the cluster's resources and the options."""
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
        per_worker_gpus = self.gpus_per_worker
        if per_worker_gpus is None:
            per_worker_gpus = 1.0 if device.startswith("cuda") else 0.0
        if per_worker_gpus and not device.startswith("cuda"):
            raise UsageProblem("--gpus-per-worker gives workers GPUs; add --device cuda to compute on them.")
        if device.startswith("cuda") and not per_worker_gpus:
            raise UsageProblem(
                "--device cuda with --gpus-per-worker 0: give each worker GPUs, e.g. 1 or 0.5."
            )
        if per_worker_gpus:
            workers = self.workers or int(gpus // per_worker_gpus)
            if workers < 1 or workers * per_worker_gpus > gpus:
                raise UsageProblem(
                    f"The Ray cluster has {gpus:g} GPUs; {workers} workers of {per_worker_gpus:g} GPUs each "
                    "do not fit: lower --workers or --gpus-per-worker."
                )
        else:
            workers = self.workers or max(1, int(cpus))
        if self.opts["threads"] > 0:
            return workers, Slot(self.opts["threads"], self.opts["threads"], per_worker_gpus)
        share = cpus / workers
        threads = max(1, int(share))
        return workers, Slot(threads if share >= 1 else round(share, 4), threads, per_worker_gpus)

    def _start(self, device: str) -> None:
        self._connect()
        workers, self.slot = self._plan(device)
        self.actors = [self._new_actor() for _ in range(workers)]
        ready, waiting = ray.wait(
            [a.ready.remote() for a in self.actors], num_returns=len(self.actors), timeout=START_TIMEOUT_S
        )
        ray.get(ready)
        if waiting:
            raise UsageProblem(
                f"{len(waiting)} of {workers} Ray workers did not start within {START_TIMEOUT_S:g} s "
                f"(each asks {self.slot.cpus:g} CPUs and {self.slot.gpus:g} GPUs of the cluster's "
                f"{ray.cluster_resources()}); lower --workers or --gpus-per-worker."
            )

    def _new_actor(self) -> Any:
        assert self.slot is not None
        options = {"num_cpus": self.slot.cpus, "num_gpus": self.slot.gpus}
        return Worker.options(**options).remote(self.slot.threads, self.slot.device)

    # -- mapping ------------------------------------------------------------------------------------

    def map(self, work: Work, items: Iterable[Any], ctx: RunContext) -> Iterator[tuple[int, Any]]:
        numbered = enumerate(items)
        first = next(numbered, None)
        if first is None:
            return  # nothing to compute (a run whose batches are stored): no cluster started
        if not self.actors:
            self._start(ctx.request.device)
        request = ray.put(ctx.request)  # sent once, resolved by each worker
        pending: deque[tuple[int, Any]] = deque([first])  # taken from `items` (or retried), not yet sent
        tries: dict[int, int] = {}
        running: dict[Any, tuple[int, Any, Any]] = {}  # object ref -> (position, item, actor)
        load = {actor: 0 for actor in self.actors}

        def submit() -> None:
            while len(running) < IN_FLIGHT_PER_WORKER * len(self.actors):
                position, item = pending.popleft() if pending else next(numbered, (None, None))
                if position is None:
                    return
                actor = min(self.actors, key=load.__getitem__)
                running[actor.compute.remote(work, item, request)] = (position, item, actor)
                load[actor] += 1

        submit()
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            position, item, actor = running.pop(ref)
            if actor in load:  # else a dead worker, replaced already
                load[actor] -= 1
            try:
                outcome = ray.get(ref)
            except RayActorError as exc:
                outcome = self._after_death(actor, load, exc, position, item, tries, pending)
            if outcome is not None:
                yield position, outcome
            submit()

    def _after_death(
        self,
        actor: Any,
        load: dict[Any, int],
        error: RayActorError,
        position: int,
        item: Any,
        tries: dict[int, int],
        pending: deque[tuple[int, Any]],
    ) -> Failed | None:
        """Replace a dead worker; the item goes back in the queue, or is failed after `RETRIES` retries."""
        if actor in load:  # its other items fail the same way: replace it once
            self.actors.remove(actor)
            del load[actor]
            fresh = self._new_actor()
            self.actors.append(fresh)
            load[fresh] = 0
        tries[position] = tries.get(position, 0) + 1
        if tries[position] > RETRIES:
            first = (str(error).strip().splitlines() or [""])[0]
            return Failed(WorkerDied(f"a Ray worker died on every one of {tries[position]} tries: {first}"))
        pending.append((position, item))
        return None

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
