"""The Ray executor against `core.local` on an IG run (the toy model): the overhead of one worker, the
speed-up of two, and the start-up cost of the local cluster.

Every candidate computes the same attribution run (`runner.execute`: batches journalled and merged into a
fresh store) from one prepared driver context; only the executor differs:
- local ×T: `core.local`, this process with T torch threads;
- ray W×T: `ray.ray` with W workers of T torch threads each (`--ray-threads T`), on an already started
  cluster whose workers have built their run context (start-up is timed apart, below).

The fair comparisons: one worker against local at the same threads (the overhead: shipping batch indices
out and arrays back, the driver journalling as they arrive); two workers of one thread against one worker of
two threads (the same two cores, what a user gets from `--workers 2` over the default of one worker taking
all CPUs as threads), and against one worker of one thread (pure scaling in the number of workers).
All candidates interleaved in one process, median of the repeats. Also given: the CPU seconds of a run, this
process and the workers together (all threads, Ray's too), which on a shared machine shows the overhead
that wall times blur.

Start-up, on a fresh local cluster as `attribench run --executor ray` makes it: `ray.init` (the cluster's
processes), the workers ready (a process each, torch imported), and the first batch (each worker builds its
run context: registry, dataset and model from the cache).

Run: python bench/ray_executor.py [--n 256] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from attribench_ray.executor import RayExecutor, worker_environment
from timing import interleaved, machine

from attribench_core import plugins
from attribench_core.executor import Executor, LocalExecutor
from attribench_core.runner import RunContext, RunRequest, attribute_batch, execute, plan, prepare

CANDIDATES = {  # name: (workers, threads each); workers 0: core.local
    "local ×2": (0, 2),
    "local ×1": (0, 1),
    "ray 1×2": (1, 2),
    "ray 1×1": (1, 1),
    "ray 2×1": (2, 1),
}

COMPARISONS = [  # (what it shows, slower, faster, wanted)
    ("overhead of one worker", "ray 1×2", "local ×2", "≤ 1.10"),
    ("the same at one thread", "ray 1×1", "local ×1", "≤ 1.10"),
    ("two workers on the same two cores", "ray 1×2", "ray 2×1", "≥ 1.7"),
    ("scaling in workers", "ray 1×1", "ray 2×1", "≥ 1.7"),
    ("two workers against this process", "local ×2", "ray 2×1", ""),
]


def cpu_seconds(executor: Executor) -> float:
    """CPU seconds used so far by this process and by the executor's workers (all their threads)."""
    workers = getattr(executor, "actors", [])
    return time.process_time() + sum(ray.get([a.__ray_call__.remote(_process_time) for a in workers]))


def _process_time(worker: object) -> float:
    return time.process_time()


def timed_run(ctx: RunContext, executor: Executor, threads: int, cpu: list[float]) -> Callable[[], None]:
    """The run's attributions through `executor` into a fresh store (the driver at `threads` threads);
    appends the CPU seconds the run used, driver and workers together, to `cpu`."""

    def run() -> None:
        shutil.rmtree(ctx.store.path.parent)
        ctx.store.path.parent.mkdir()
        torch.set_num_threads(threads)
        ctx.executor = executor
        before = cpu_seconds(executor)
        execute(ctx, plan(ctx), keep_going=False)
        cpu.append(cpu_seconds(executor) - before)

    return run


def start_up(ctx: RunContext) -> tuple[float, float, float]:
    """Seconds to start a local cluster, its workers, and their first batch (each builds its context)."""
    executor = RayExecutor(workers=2)
    first = [task.work(index) for task in plan(ctx) for index in task.batches][:2]
    start = time.perf_counter()
    executor._connect()  # the executor's own steps, timed apart
    connected = time.perf_counter()
    executor._start(ctx.request.device)
    ready = time.perf_counter()
    list(executor.map(attribute_batch, first, ctx))
    done = time.perf_counter()
    executor.close()
    return connected - start, ready - connected, done - ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"machine: {machine()}; torch {torch.__version__}; ray {ray.__version__}")
    print(
        f"load average at the start {os.getloadavg()[0]:.1f}; {args.n} images, batches of {args.batch_size}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp, "run", "bench.h5")
        store.parent.mkdir()
        request = RunRequest(
            "core.relevance_mass", ["ig"], num_imgs=args.n, batch_size=args.batch_size, store=store
        )
        ctx = prepare(plugins.get_registry(), request)  # trains the toy model once, if not cached
        startups = [start_up(ctx) for _ in range(args.repeats)]
        # room for every candidate's workers at once (idle ones cost nothing); each reserves its threads
        ray.init(
            address="local",
            num_cpus=8,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": worker_environment()},
        )
        executors = {
            name: LocalExecutor() if workers == 0 else RayExecutor(workers=workers, threads=threads)
            for name, (workers, threads) in CANDIDATES.items()
        }
        cpu: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        runs = {
            name: timed_run(ctx, executors[name], threads, cpu[name])
            for name, (_, threads) in CANDIDATES.items()
        }
        for name, run in runs.items():
            run()  # workers started, contexts built
            cpu[name].clear()
        times = interleaved(runs, repeats=args.repeats)
        for executor in executors.values():
            executor.close()
        ray.shutdown()
    print(f"median of {args.repeats} interleaved repeats; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| candidate | s | ms/image | CPU s (driver + workers) |\n|---|---:|---:|---:|")
    for name, seconds in times.items():
        used = statistics.median(cpu[name])
        print(f"| {name} | {seconds:.2f} | {seconds / args.n * 1e3:.1f} | {used:.2f} |")
    print("\n| comparison | wall-time ratio | CPU-time ratio | wanted (wall) |\n|---|---:|---:|---:|")
    for label, slower, faster, wanted in COMPARISONS:
        wall = times[slower] / times[faster]
        used = statistics.median(cpu[slower]) / statistics.median(cpu[faster])
        print(f"| {slower} / {faster} ({label}) | {wall:.3f} | {used:.3f} | {wanted} |")
    init, ready, first = (sorted(column)[len(column) // 2] for column in zip(*startups, strict=True))
    print("\n| start-up (median of the repeats) | s |\n|---|---:|")
    print(f"| ray.init: local cluster | {init:.2f} |\n| 2 workers ready | {ready:.2f} |")
    print(f"| first 2 batches (workers build their run context) | {first:.2f} |")


if __name__ == "__main__":
    main()
