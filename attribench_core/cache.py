"""Files under `ATTRIBENCH_HOME` (default `~/.cache/attribench`): generated datasets and trained weights.

Every write is atomic (temporary file, then rename); a file that fails to load is treated as absent and
rebuilt, never trusted.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
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


def cached_arrays(relative: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored at `home()/relative` (.npz), built by `build()` and saved when absent or unreadable."""
    path = home() / relative
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"Cache entry {path} is unreadable ({exc}); rebuilding it.", stacklevel=2)
    arrays = build()
    tmp = atomic_path(path)
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)
    return arrays
