"""Executors: where a run's units of work are computed (attribution batches, a metric's per-batch work).

An executor maps a *work function* over *items*. The work function is a module-level function
`work(ctx, item) -> value` (picklable by reference), where `ctx` is the `RunContext` of the run on the
process that computes: the driver's own for `core.local`; for a distributed executor, one that each
worker builds once from the run's `RunRequest` (`runner.worker_context`), with its datasets and models
from the registry and the cache. Items are small and picklable (dataset indices, names, a few arrays), never
whole datasets; values are arrays sent back to the driver. Only the driver writes the store.

`map` yields `(position, outcome)` as items finish, in any order; `position` counts the items as `map`
consumed them (it may consume the iterable lazily, so a caller can stop feeding an explainer that failed),
and `outcome` is the value or a `Failed`. Results must not depend on the order: seeds are per item.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from attribench_core.errors import UsageProblem
from attribench_core.params import Param, resolve_params

if TYPE_CHECKING:
    from attribench_core.runner import RunContext

Work = Callable[["RunContext", Any], Any]


@dataclass
class Failed:
    """An item whose work raised `error` (the original exception, re-raisable on the driver)."""

    error: BaseException

    @property
    def reason(self) -> str:
        first = (str(self.error).strip().splitlines() or [""])[0]
        return f"{type(self.error).__name__}: {first}"


class Executor(ABC):
    """Computes work items. Subclasses declare `options` (set on the command line as
    `--<name>-<option>`, e.g. `--ray-address`) and implement `map`; `workers` and `gpus_per_worker` are the
    generic resources (`--workers`, `--gpus-per-worker`), None where the user gave none."""

    options: ClassVar[tuple[Param, ...]] = ()

    def __init__(
        self, *, workers: int | None = None, gpus_per_worker: float | None = None, **options: Any
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageProblem(f"--workers must be at least 1; got {workers}.")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise UsageProblem(f"--gpus-per-worker must be at least 0; got {gpus_per_worker}.")
        self.workers, self.gpus_per_worker = workers, gpus_per_worker
        self.opts = resolve_params(self.options, options, owner=type(self).__name__, noun="option")

    @abstractmethod
    def map(self, work: Work, items: Iterable[Any], ctx: RunContext) -> Iterator[tuple[int, Any]]:
        """`(position, value or Failed)` for every item, as each finishes."""

    def close(self) -> None:  # noqa: B027 - optional: executors without workers have nothing to release
        """Release workers (called once, at the end of the run)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attempt(work: Work, ctx: RunContext, item: Any) -> Any:
    """`work(ctx, item)`, or `Failed` with what it raised."""
    try:
        return work(ctx, item)
    except Exception as exc:
        return Failed(exc)


class LocalExecutor(Executor):
    """In this process, on the run's device, one item after the other in the order given (`core.local`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.workers not in (None, 1) or self.gpus_per_worker:
            raise UsageProblem(
                "core.local computes in this process on --device; for several workers or GPUs per worker "
                "use a distributed executor, e.g. --executor ray (pip install -e plugins/attribench_ray)."
            )

    def map(self, work: Work, items: Iterable[Any], ctx: RunContext) -> Iterator[tuple[int, Any]]:
        for position, item in enumerate(items):
            yield position, attempt(work, ctx, item)


def in_order(outcomes: Iterator[tuple[int, Any]]) -> Iterator[Any]:
    """The values of `Executor.map` in item order (each yielded as soon as those before it are in); the
    first failure is raised, as a loop over the items would."""
    waiting: list[tuple[int, int, Any]] = []
    expected = 0
    for arrival, (position, outcome) in enumerate(outcomes):
        heapq.heappush(waiting, (position, arrival, outcome))
        while waiting and waiting[0][0] == expected:
            _, _, value = heapq.heappop(waiting)
            if isinstance(value, Failed):
                raise value.error
            yield value
            expected += 1
