"""Progress reporting without a UI dependency: `progress(description, total)` returns `advance(n)`."""

from __future__ import annotations

from collections.abc import Callable

Advance = Callable[[int], None]
Progress = Callable[[str, int], Advance]


def no_progress(description: str, total: int) -> Advance:
    """A Progress that shows nothing."""
    return lambda n: None
