"""Progress for logs: lines at a steady interval with count, rate and ETA, checked on a fake clock."""

import io

import click
from click.testing import CliRunner

from attribench_core.progress import LineProgress, RichProgress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_prints_a_line_every_interval_and_one_at_its_end():
    clock, stream = _Clock(), io.StringIO()
    advance = LineProgress(stream, interval=10, clock=clock)("attributions methods.ig", 1000)
    for _ in range(4):  # 4 s per batch of 10: a line once 10 s have passed since the last one
        clock.now += 4
        advance(10)
    clock.now += 5000 - 16  # the rest in one go: 1000 images in 5000 s
    advance(960)
    advance(5)  # past the end: ignored
    assert stream.getvalue().splitlines() == [
        "attributions methods.ig: 30/1000 (3%), 2.5/s, ETA 6m28s",  # t=12 s: 970 left at 2.5/s = 388 s
        "attributions methods.ig: 1000/1000 (100%), 0.2/s, done in 1h23m",
    ]


def test_short_steps_print_only_their_end_and_a_stalled_step_has_no_eta():
    clock, stream = _Clock(), io.StringIO()
    progress = LineProgress(stream, interval=10, clock=clock)
    advance = progress("training", 3)
    clock.now += 2
    advance(3)
    stalled = progress("metric core.pointing_game", 2)
    clock.now += 11
    stalled(0)
    assert stream.getvalue().splitlines() == [
        "training: 3/3 (100%), 1.5/s, done in 2s",
        "metric core.pointing_game: 0/2 (0%), 0/s, ETA unknown",
    ]


def test_the_cli_writes_lines_to_stderr_when_it_is_not_a_terminal():
    def steps() -> None:
        with RichProgress(stderr=True) as progress:
            progress("training", 2)(2)

    result = CliRunner().invoke(click.command()(steps))
    assert result.stdout == ""
    assert result.stderr.startswith("training: 2/2 (100%), ") and "done in 0s" in result.stderr
