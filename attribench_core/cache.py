"""Files under `ATTRIBENCH_HOME` (default `~/.cache/attribench`): generated datasets and trained weights.

Every write is atomic (temporary file, then rename); a file that fails to load is treated as absent and
rebuilt, never trusted. Building an entry holds an exclusive lock on a sibling `.<name>.lock` file, so
that parallel processes (Ray workers, two runs) build it once: the others wait, then load it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


def home() -> Path:
    """The cache root, created on first use."""
    root = os.environ.get("ATTRIBENCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attribench"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_path(path: Path) -> Path:
    """A temporary sibling of `path` to write to before `os.replace(tmp, path)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def building(path: Path) -> Iterator[None]:
    """Hold the exclusive build lock of cache entry `path` (waits while another process holds it)."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_arrays(relative: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored at `home()/relative` (.npz), built by `build()` and saved when absent or unreadable."""
    path = home() / relative
    arrays = _load_arrays(path)
    if arrays is not None:
        return arrays
    with building(path):
        arrays = _load_arrays(path)  # built by another process while this one waited
        if arrays is not None:
            return arrays
        arrays = build()
        tmp = atomic_path(path)
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    return arrays


def _load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of cache entry `path`, or None when it is absent or unreadable (then rebuilt)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"Cache entry {path} is unreadable ({exc}); rebuilding it.", stacklevel=3)
        return None
