"""Progress reporting without a UI dependency: `progress(description, total)` returns `advance(n)`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Advance = Callable[[int], None]
Progress = Callable[[str, int], Advance]


def no_progress(description: str, total: int) -> Advance:
    """A Progress that shows nothing."""
    return lambda n: None


class LineProgress:
    """A Progress for logs (nohup, CI, a file): one line per step every `interval` seconds while it advances,
    and one when it ends, e.g. `attributions methods.ig: 120/1000 (12%), 3.1/s, ETA 4m44s`."""

    def __init__(
        self, stream: TextIO, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream, self.interval, self.clock = stream, interval, clock

    def __call__(self, description: str, total: int) -> Advance:
        started = last = self.clock()
        done = 0

        def advance(n: int) -> None:
            nonlocal done, last
            if done >= total:
                return
            done += n
            now = self.clock()
            if done >= total or now - last >= self.interval:
                last = now
                print(self.line(description, done, total, now - started), file=self.stream, flush=True)

        return advance

    @staticmethod
    def line(description: str, done: int, total: int, elapsed: float) -> str:
        """`description: done/total (percent), rate/s, ETA` (at the end: the time it took)."""
        rate = done / elapsed if elapsed > 0 else float("inf")
        head = f"{description}: {done}/{total} ({100 * done / max(total, 1):.0f}%), {rate:.3g}/s"
        if done >= total:
            return f"{head}, done in {_duration(elapsed)}"
        return f"{head}, ETA {_duration((total - done) / rate) if rate > 0 else 'unknown'}"


def _duration(seconds: float) -> str:
    """`42s`, `4m44s`, `2h05m`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RichProgress:
    """A rich progress display as a `Progress` callable (on stderr when stdout carries JSON). Where that
    stream is not a terminal (nohup, CI, a log file), which rich would leave blank until the end, plain
    lines go to stderr instead (`LineProgress`: count, rate and ETA every 10 s, and at the end)."""

    def __init__(self, stderr: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=stderr, highlight=False)
        self.lines = None if console.is_terminal else LineProgress(sys.stderr)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=self.lines is not None,
        )

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, description: str, total: int):
        if self.lines is not None:
            return self.lines(description, total)
        task = self.bar.add_task(description, total=total)
        return lambda n: self.bar.advance(task, n)
