"""The HDF5 attribution store: compute attributions once, evaluate them with many metrics.

Layout of the file (default `./attribench.h5`)::

    /attributions/<dataset>@<data-hash>/<model>@<weights-hash>/<explainer>@<param-hash>/
        attribution [N,C,H,W] float32 (chunked per sample, compressed)
        index [N] int64 (dataset indices), target [N], prediction [N], nonfinite [N] bool
        diag/<name> [N] float32: per-map diagnostics the explainer reported (e.g. DeepLIFT's
            summation_gap), NaN where a batch did not report it; attrs: note (what it means for the model)
        attrs: provenance (explainer params JSON, seed, weights hash, versions, created, ...)
    /results/<metric>/<run-id>/   attrs: the run's JSON; per-sample values as datasets

Crash safety: HDF5 files can be corrupted by a kill in the middle of a write, so the store file is never
written in place. Each computed batch goes first to a journal (`<store>.journal/`, one `.npz` per batch,
written to a temporary name and renamed, so a batch is either complete or absent). `merge()` copies the
store, appends the journal to the copy, and renames the copy over the store: at every instant the store
is the old file or the new one. Merges hold an exclusive lock on `<store>.lock`; a second process waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from attribench_core.errors import StoreError

COMPRESSIONS = ("lzf", "gzip", "none")
ROW_FIELDS = ("index", "target", "prediction", "nonfinite")
DIAGNOSTICS = "diag"  # the group's sub-group of per-map diagnostics, aligned with `index`


def short_hash(payload: Any, length: int = 10) -> str:
    """A stable short hash of JSON-serialisable `payload` (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class GroupKey:
    """Where one (dataset, model, explainer) set of attributions lives; each part is `name@hash`."""

    dataset: str
    model: str
    explainer: str

    @property
    def path(self) -> str:
        return f"attributions/{self.dataset}/{self.model}/{self.explainer}"


@dataclass
class Stored:
    """Attributions read back for some dataset indices, in the order asked for."""

    index: np.ndarray
    attribution: np.ndarray
    target: np.ndarray
    prediction: np.ndarray
    nonfinite: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [len(index)] float32


@dataclass
class ResultRecord:
    """A metric run to be saved under /results/<metric>/<run_id>."""

    metric: str
    run_id: str
    payload: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class AttributionStore:
    def __init__(
        self, path: str | os.PathLike[str], *, compression: str = "lzf", lock_timeout: float = 600.0
    ):
        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise StoreError(f"Unknown compression '{compression}'; use one of {', '.join(COMPRESSIONS)}.")
        self.compression = None if compression == "none" else compression
        self.lock_timeout = lock_timeout
        self.journal_dir = self.path.with_name(self.path.name + ".journal")

    # -- opening and locking ---------------------------------------------------------------------

    def check(self) -> None:
        """Fail early, with one line, if the store cannot be used (missing folder, unreadable file)."""
        if not self.path.parent.is_dir():
            raise StoreError(
                f"Store folder '{self.path.parent}' does not exist; create it or pass another --store."
            )
        if self.path.exists():
            with self._open_read():
                pass

    @contextlib.contextmanager
    def _open_read(self) -> Iterator[h5py.File | None]:
        if not self.path.exists():
            yield None
            return
        try:
            handle = h5py.File(self.path, "r", locking=False)
        except OSError as exc:
            raise StoreError(
                f"'{self.path}' is not a readable attribench store ({exc}); "
                "move it away or pass another --store."
            ) from None
        with handle:
            yield handle

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Exclusive lock for merging (shared for journal writes, which may run side by side); waits up to
        `lock_timeout` seconds, then fails with a clear message."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as handle:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"The store '{self.path}' is locked by another attribench process; "
                            "wait for it to finish or pass another --store."
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- what is there -------------------------------------------------------------------------

    def _journal_group(self, key: GroupKey) -> Path:
        return self.journal_dir / short_hash(key.path, 16)

    def completed(self, key: GroupKey) -> np.ndarray:
        """Dataset indices already computed for `key`, in the store or in the journal."""
        done = [self._stored_index(key)]
        for chunk in sorted(self._journal_group(key).glob("*.npz")):
            with np.load(chunk) as data:
                done.append(data["index"])
        return np.unique(np.concatenate(done)).astype(np.int64)

    def _stored_index(self, key: GroupKey) -> np.ndarray:
        with self._open_read() as f:
            if f is None or key.path not in f:
                return np.zeros(0, dtype=np.int64)
            return f[key.path]["index"][()]

    def missing(self, key: GroupKey, index: Sequence[int] | np.ndarray) -> np.ndarray:
        """The part of `index` (order kept) that still has to be computed."""
        index = np.asarray(index, dtype=np.int64)
        return index[~np.isin(index, self.completed(key))]

    # -- writing ---------------------------------------------------------------------------------

    def write_batch(
        self,
        key: GroupKey,
        provenance: dict[str, Any],
        index: np.ndarray,
        attribution: np.ndarray,
        target: np.ndarray,
        prediction: np.ndarray,
        *,
        diagnostics: Mapping[str, np.ndarray] | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """Journal one computed batch atomically; `merge()` moves it into the store file. `diagnostics`:
        per-map values `[len(index)]` by name (`Explainer.diagnostics`), `notes` one line per name."""
        meta = {"path": key.path, "provenance": provenance, "notes": dict(notes or {})}
        meta = np.array(json.dumps(meta, default=str))
        attribution = np.asarray(attribution, dtype=np.float32)
        nonfinite = ~np.isfinite(attribution.reshape(len(attribution), -1)).all(axis=1)
        folder = self._journal_group(key)
        chunk = folder / f"{int(index[0]):012d}-{len(index)}.npz"
        tmp = chunk.with_suffix(f".tmp{os.getpid()}")
        with self.lock(shared=True), open(_mkdir_parent(tmp), "wb") as handle:
            np.savez(
                handle,
                meta=meta,
                index=index,
                attribution=attribution,
                target=target,
                prediction=prediction,
                nonfinite=nonfinite,
                **{
                    f"{DIAGNOSTICS}/{name}": np.asarray(values, dtype=np.float32)
                    for name, values in (diagnostics or {}).items()
                },
            )
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp, chunk)

    def merge(self, results: Sequence[ResultRecord] = ()) -> None:
        """Move journalled batches (and `results`) into the store file by copy, append and atomic rename."""
        with self.lock():
            chunks = sorted(self.journal_dir.glob("*/*.npz")) if self.journal_dir.exists() else []
            if not chunks and not results:
                return
            tmp = self.path.with_name(f".{self.path.name}.merge{os.getpid()}")
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            try:
                with h5py.File(tmp, "a", locking=False) as f:
                    for chunk in chunks:
                        self._append_chunk(f, chunk)
                    for record in results:
                        _write_result(f, record)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            for chunk in chunks:
                chunk.unlink()
            for folder in [*{c.parent for c in chunks}, self.journal_dir]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty; journal writers wait for this lock

    def _append_chunk(self, f: h5py.File, chunk: Path) -> None:
        with np.load(chunk) as data:
            batch = {name: data[name] for name in data.files}
        meta = json.loads(str(batch.pop("meta")))
        prefix = f"{DIAGNOSTICS}/"
        diagnostics = {k.removeprefix(prefix): batch.pop(k) for k in list(batch) if k.startswith(prefix)}
        group = f.require_group(meta["path"])
        if "index" not in group:
            shape = batch["attribution"].shape[1:]
            group.create_dataset(
                "attribution",
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype="float32",
                chunks=(1, *shape),
                compression=self.compression,
            )
            for name in ROW_FIELDS:
                group.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=batch[name].dtype, chunks=(256,)
                )
            group.attrs.update({k: _attr(v) for k, v in meta["provenance"].items()})
        new = ~np.isin(batch["index"], group["index"][()])
        if not new.any():
            return
        start = group["index"].shape[0]
        for name in ("attribution", *ROW_FIELDS):
            rows = batch[name][new]
            group[name].resize(start + len(rows), axis=0)
            group[name][start:] = rows
        for name in {*diagnostics, *_diagnostic_names(group)}:
            column = group.get(f"{prefix}{name}")
            if column is None:  # a diagnostic first reported now: NaN for the maps stored before
                empty = np.full(start, np.nan, np.float32)
                column = group.create_dataset(f"{prefix}{name}", data=empty, maxshape=(None,), chunks=(256,))
            rows = diagnostics.get(name, np.full(len(new), np.nan, np.float32))[new]
            column.resize(start + len(rows), axis=0)
            column[start:] = rows
            if meta.get("notes", {}).get(name):
                column.attrs["note"] = meta["notes"][name]
        group.attrs["nonfinite_count"] = int(group["nonfinite"][()].sum())

    # -- reading ---------------------------------------------------------------------------------

    def read(self, key: GroupKey, index: Sequence[int] | np.ndarray) -> Stored:
        """Attributions for `index` (every one must be in the store; run `merge()` first)."""
        index = np.asarray(index, dtype=np.int64)
        with self._open_read() as f:
            if f is None or key.path not in f:
                raise StoreError(f"No attributions for {key.path} in '{self.path}'.")
            group = f[key.path]
            stored = group["index"][()]
            position = {int(i): p for p, i in enumerate(stored)}
            missing = [int(i) for i in index if int(i) not in position]
            if missing:
                raise StoreError(f"{len(missing)} indices of {key.path} are not in '{self.path}'.")
            rows = np.array([position[int(i)] for i in index], dtype=np.int64)
            order = np.argsort(rows)
            unique_rows, inverse = np.unique(rows[order], return_inverse=True)
            back = np.empty_like(order)
            back[order] = np.arange(len(order))

            def take(name: str) -> np.ndarray:
                return group[name][unique_rows][inverse][back]

            diagnostics = {name: take(f"{DIAGNOSTICS}/{name}") for name in _diagnostic_names(group)}
            fields = (take(name) for name in ("attribution", "target", "prediction", "nonfinite"))
            return Stored(index, *fields, diagnostics=diagnostics)

    def groups(self) -> list[dict[str, Any]]:
        """Every attribution group and result run, with its size and provenance."""
        with self._open_read() as f:
            return [] if f is None else [_describe(path, f[path]) for path in _group_paths(f)]

    def show(self, path: str) -> dict[str, Any]:
        """The provenance of a group, with a summary of its diagnostics (if any) under "diagnostics"."""
        with self._open_read() as f:
            if f is None or path not in f:
                raise StoreError(f"No group '{path}' in '{self.path}'; see `attribench store ls`.")
            summary = diagnostics_summary(f[path])
            return {**_read_attrs(f[path]), **({"diagnostics": summary} if summary else {})}

    def pending_chunks(self) -> int:
        return len(list(self.journal_dir.glob("*/*.npz"))) if self.journal_dir.exists() else 0

    def verify(self) -> list[str]:
        """Integrity problems (empty list: the store is sound)."""
        problems: list[str] = []
        with self._open_read() as f:
            for info in self.groups() if f is not None else []:
                if info["kind"] != "attributions":
                    continue
                group = f[info["path"]]
                n = group["index"].shape[0]
                lengths = {name: group[name].shape[0] for name in _columns(group)}
                if set(lengths.values()) != {n}:
                    problems.append(f"{info['path']}: datasets have different lengths {lengths}")
                    continue
                if len(np.unique(group["index"][()])) != n:
                    problems.append(f"{info['path']}: duplicate indices")
                bad = 0
                for start in range(0, n, 256):
                    rows = group["attribution"][start : start + 256]
                    bad += int((~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)).sum())
                recorded = int(group["nonfinite"][()].sum())
                if bad != recorded:
                    problems.append(f"{info['path']}: {bad} non-finite rows but {recorded} recorded")
        if self.pending_chunks():
            problems.append(
                f"{self.pending_chunks()} journalled batches not merged yet (re-run to merge them)"
            )
        return problems

    def export(self, path: str, out: str | os.PathLike[str]) -> Path:
        """Write one attribution group (arrays + provenance JSON) to an `.npz` file."""
        with self._open_read() as f:
            if f is None or path not in f or "index" not in f[path]:
                raise StoreError(
                    f"No attribution group '{path}' in '{self.path}'; see `attribench store ls`."
                )
            group = f[path]
            arrays = {name: group[name][()] for name in _columns(group)}
            arrays["provenance"] = np.array(json.dumps(_read_attrs(group)))
        out = Path(out)
        np.savez_compressed(out, **arrays)
        return out


def _group_paths(f: h5py.File) -> list[str]:
    """Paths of attribution groups (three levels under /attributions) and result runs (two under /results)."""
    paths = []
    for top, depth in (("attributions", 3), ("results", 2)):
        level = [top] if top in f else []
        for _ in range(depth):
            level = [f"{p}/{child}" for p in level for child in f[p]]
        paths += level
    return paths


def _describe(path: str, group: h5py.Group) -> dict[str, Any]:
    if path.startswith("attributions/"):
        return {
            "path": path,
            "kind": "attributions",
            "n": group["index"].shape[0],
            "shape": list(group["attribution"].shape[1:]),
            "diagnostics": diagnostics_summary(group),
            "attrs": _read_attrs(group),
        }
    return {"path": path, "kind": "result", "n": len(group), "shape": [], "attrs": _read_attrs(group)}


def _diagnostic_names(group: h5py.Group) -> list[str]:
    return sorted(group[DIAGNOSTICS]) if DIAGNOSTICS in group else []


def _columns(group: h5py.Group) -> list[str]:
    """The per-map datasets of an attribution group, each of length N."""
    return ["attribution", *ROW_FIELDS, *(f"{DIAGNOSTICS}/{name}" for name in _diagnostic_names(group))]


def diagnostics_summary(group: h5py.Group) -> dict[str, dict[str, Any]]:
    """Per diagnostic of an attribution group: maps with a value (`n`), their median and max, the note."""
    summary: dict[str, dict[str, Any]] = {}
    for name in _diagnostic_names(group):
        column = group[DIAGNOSTICS][name]
        values = column[()]
        values = values[np.isfinite(values)]
        summary[name] = {
            "n": len(values),
            "median": float(np.median(values)) if len(values) else None,
            "max": float(values.max()) if len(values) else None,
            "note": _read_attrs(column).get("note"),
        }
    return summary


def _mkdir_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _attr(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, np.generic)) else json.dumps(value, default=str)


def _read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, str) and v[:1] in "{[":
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        out[k] = v
    return out


def _write_result(f: h5py.File, record: ResultRecord) -> None:
    group = f.require_group(f"results/{record.metric}").create_group(record.run_id)
    group.attrs["payload"] = json.dumps(record.payload, default=str)
    for name, array in record.arrays.items():
        group.create_dataset(name, data=array)
