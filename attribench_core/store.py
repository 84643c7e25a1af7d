"""The HDF5 attribution store: compute attributions once, evaluate them with many metrics.

Layout (default `--store attribench.h5`; docs/store.md gives the reasons and the alternatives)::

    attribench.h5              catalogue: attrs format="attribench-store", version=2, kind="catalogue"
    attribench.h5.d/attributions/<hash of group path>/seg-<first>-<last>.h5
                               the group's segments, in the order they were committed; each holds
        attribution [n,C,H,W] float32 (chunks of several maps, shuffle + compression, Fletcher32),
        index [n] int64 (dataset indices), target [n], prediction [n], nonfinite [n] bool,
        diag/<name> [n] float32 (per-map diagnostics; attrs: note), attrs: path, provenance, nonfinite_count
    attribench.h5.d/results/<hash of results/metric/run-id>.h5   attrs: path, payload (the run's `--json`
                               outcome); per-sample arrays <label>/<name> and <label>/index
    attribench.h5.journal/<hash of group path>/<first index>-<n>.npz   batches computed, not committed

Crash safety: an HDF5 file written in place can be corrupted by a kill, so no committed file is ever
written again. A computed batch goes to the journal first (temporary name, fsync, rename). A commit
(`merge()`) writes the journal of each group into one new segment file under a temporary name, fsyncs
it and renames it into the group's folder, then deletes the journal files it took in: cost O(what is
added), whatever the store's size. Many small segments are compacted into one (`seg-<first>-<last>`
replaces the segments it spans: readers ignore spanned segments, so the rename is the switch). Commits
hold an exclusive lock on `<store>.lock`; journal writers and readers a shared one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import re
import shutil
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from attribench_core.errors import StoreError
from attribench_core.identity import short_hash
from attribench_core.result import StoredRun, json_text

FORMAT = "attribench-store"
VERSION = 2
MARKER_ATTRS = ("format", "version", "kind", "path", "nonfinite_count")  # the store's, not provenance
COMPRESSIONS = ("none", "lzf", "gzip")  # none by measurement (docs/store.md)
ROW_FIELDS = ("index", "target", "prediction", "nonfinite")
COLUMNS = ("attribution", *ROW_FIELDS)
DIAGNOSTICS = "diag"  # the segment's sub-group of per-map diagnostics, aligned with `index`
CHUNK_BYTES = 2 * 2**20  # attribution chunks hold as many maps as fit (at least one)
ROW_CHUNK = 1024
CHUNK_CACHE_BYTES = 64 * 2**20  # per open segment: a chunk is decompressed (or compressed) once
SMALL_SEGMENT_BYTES = 64 * 2**20
COMPACT_AFTER = 16  # this many small segments at a group's end are compacted into one
TMP_PREFIX = ".tmp-"
REJECTED = "rejected"
SEGMENT = re.compile(r"seg-(\d{12})-(\d{12})\.h5")
UNMERGEABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
_temporaries = itertools.count()


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
class Verification:
    """What `verify()` found: `problems` are damage (exit 1), `notes` normal states worth knowing."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Batch:
    """One journal file, loaded and checked."""

    path: str
    provenance: dict[str, Any]
    notes: dict[str, str]
    rows: dict[str, np.ndarray]
    diagnostics: dict[str, np.ndarray]


class AttributionStore:
    def __init__(
        self, path: str | os.PathLike[str], *, compression: str = "none", lock_timeout: float = 600.0
    ):
        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise StoreError(f"Unknown compression '{compression}'; use one of {', '.join(COMPRESSIONS)}.")
        self.compression = None if compression == "none" else compression
        self.lock_timeout = lock_timeout
        self.folder = self.path.with_name(self.path.name + ".d")
        self.journal_dir = self.path.with_name(self.path.name + ".journal")

    # -- opening and locking ---------------------------------------------------------------------

    def check(self) -> None:
        """Fail early, with one line, if the store cannot be used (missing folder, unreadable or foreign
        file, newer format); upgrade a 0.1 store (one HDF5 file) once."""
        if not self.path.parent.is_dir():
            raise StoreError(
                f"Store folder '{self.path.parent}' does not exist; create it or pass another --store."
            )
        self._ready()

    def _format(self) -> str:
        """ "absent", "0.1" (one HDF5 file without a marker) or "2"; a StoreError for anything else."""
        if not self.path.exists():
            return "absent"
        try:
            handle = h5py.File(self.path, "r", locking=False)
        except OSError as exc:
            raise StoreError(
                f"'{self.path}' is not a readable attribench store ({exc}); "
                "move it away or pass another --store."
            ) from None
        with handle:
            attrs = dict(handle.attrs)
            if not attrs and set(handle) <= {"attributions", "results"}:
                return "0.1"
            if attrs.get("format") != FORMAT or attrs.get("kind") != "catalogue":
                raise StoreError(
                    f"'{self.path}' is an HDF5 file but not an attribench store (no format marker); "
                    "move it away or pass another --store."
                )
            if int(attrs.get("version", 0)) > VERSION:
                raise StoreError(
                    f"'{self.path}' is an attribench store of format version {attrs['version']}, newer "
                    f"than this attribench reads ({VERSION}); upgrade attribench."
                )
            return "2"

    def _ready(self) -> bool:
        """Whether the store exists (upgrading a 0.1 store first, under the exclusive lock)."""
        found = self._format()
        if found == "0.1":
            with self.lock():
                if self._format() == "0.1":
                    self._upgrade()
            found = "2"
        return found == "2"

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Exclusive lock for commits (shared for journal writes and reads, which may run side by side);
        waits up to `lock_timeout` seconds, then fails with a clear message. Reading a store on read-only
        media goes without the lock (nothing can commit there)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with contextlib.ExitStack() as stack:
            try:
                handle = stack.enter_context(open(lock_path, "a+"))
            except OSError:
                if not shared:
                    raise
                yield
                return
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

    # -- where things are ------------------------------------------------------------------------

    def _group_dir(self, path: str) -> Path:
        return self.folder / "attributions" / short_hash(path, 16)

    def _result_file(self, path: str) -> Path:
        return self.folder / "results" / f"{short_hash(path, 16)}.h5"

    def _group_dirs(self) -> list[Path]:
        folder = self.folder / "attributions"
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def _result_files(self) -> list[Path]:
        folder = self.folder / "results"
        return sorted(folder.glob("[!.]*.h5")) if folder.is_dir() else []

    def _journal_group(self, key: GroupKey) -> Path:
        return self.journal_dir / short_hash(key.path, 16)

    def _journal_chunks(self) -> list[Path]:
        if not self.journal_dir.is_dir():
            return []
        return sorted(p for p in self.journal_dir.glob("*/*.npz") if p.parent.name != REJECTED)

    # -- what is there -------------------------------------------------------------------------

    def completed(self, key: GroupKey) -> np.ndarray:
        """Dataset indices already computed for `key`, in the store or in the journal."""
        if not self._ready():
            done = [np.zeros(0, np.int64)]
        else:
            with self.lock(shared=True), self.reader(key) as reader:
                done = [reader.index]
        with self.lock(shared=True):
            for chunk in sorted(self._journal_group(key).glob("*.npz")):
                with contextlib.suppress(*UNMERGEABLE), np.load(chunk) as data:
                    done.append(data["index"])  # an unreadable batch is set aside at the next commit
        return np.unique(np.concatenate(done)).astype(np.int64)

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
        """Journal one computed batch atomically; `merge()` commits it to the store. `diagnostics`:
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

    def merge(self, results: Sequence[StoredRun] = ()) -> None:
        """Commit journalled batches (one new segment per group) and `results` (one file per run); clean
        the leftovers of interrupted commits first. Cost: what is added, not the store's size."""
        with self.lock():
            found = self._format()
            if found == "0.1":
                self._upgrade()
            self._remove(self._leftovers())
            chunks = self._journal_chunks()
            if not chunks and not results:
                return
            if found == "absent":
                self._write_catalogue()
            for folder in sorted({c.parent for c in chunks}):
                self._commit_group(sorted(c for c in chunks if c.parent == folder))
            for record in results:
                self._write_result(record)
            for folder in [*{c.parent for c in chunks}, self.journal_dir]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty; journal writers wait for this lock

    def _commit_group(self, chunks: list[Path]) -> None:
        """Write the new rows of `chunks` (one journal group) as one segment, then delete `chunks`."""
        writer: _SegmentWriter | None = None
        committed: Path | None = None
        taken: set[int] | None = None
        shape: tuple[int, ...] | None = None
        try:
            for chunk in chunks:
                try:
                    batch = _load_batch(chunk)
                except UNMERGEABLE as exc:
                    self._reject(chunk, f"{type(exc).__name__}: {exc}")
                    continue
                if taken is None:
                    with GroupReader(self._group_dir(batch.path), batch.path) as reader:
                        taken, shape = set(reader.index.tolist()), reader.map_shape
                if shape is not None and batch.rows["attribution"].shape[1:] != shape:
                    self._reject(
                        chunk, f"maps of shape {batch.rows['attribution'].shape[1:]}, the group's {shape}"
                    )
                    continue
                new = np.array([int(i) not in taken for i in batch.rows["index"]], dtype=bool)
                if not new.any():
                    continue
                if writer is None:
                    writer = _SegmentWriter(self._group_dir(batch.path), batch.path, batch.provenance, self)
                    shape = batch.rows["attribution"].shape[1:]
                writer.append(
                    {k: v[new] for k, v in batch.rows.items()},
                    {k: v[new] for k, v in batch.diagnostics.items()},
                    batch.notes,
                )
                taken.update(batch.rows["index"][new].tolist())
            if writer is not None:
                number = _next_segment(writer.folder)
                writer.commit(writer.folder / _segment_name(number, number))
                committed, writer = writer.folder, None
        finally:
            if writer is not None:
                writer.discard()
        for chunk in chunks:
            chunk.unlink(missing_ok=True)
        if committed is not None:
            self._compact(committed)

    def _compact(self, folder: Path) -> None:
        """Merge the small segments at the end of a group into one once there are `COMPACT_AFTER`, so
        that a group built by many small runs stays a few files; each map is rewritten a bounded number of
        times (until its segment reaches `SMALL_SEGMENT_BYTES`)."""
        tail: list[Path] = []
        for segment in reversed(_live_segments(folder)):
            if segment.stat().st_size >= SMALL_SEGMENT_BYTES:
                break
            tail.insert(0, segment)
        if len(tail) < COMPACT_AFTER:
            return
        with h5py.File(tail[0], "r", locking=False) as first:
            path, provenance = str(first.attrs["path"]), _provenance_attrs(first)
        writer = _SegmentWriter(folder, path, provenance, self)
        try:
            for segment in tail:
                with h5py.File(segment, "r", locking=False) as f:
                    writer.copy_from(f)
            writer.commit(folder / _segment_name(_span(tail[0])[0], _span(tail[-1])[1]))
        except BaseException:
            writer.discard()
            raise
        self._remove(tail)  # spanned by the new segment: readers ignore them already

    def _reject(self, chunk: Path, reason: str) -> None:
        """Set an un-mergeable journal batch aside (with its reason) so that later runs are not blocked."""
        target = _mkdir_parent(self.journal_dir / REJECTED / f"{chunk.parent.name}-{chunk.name}")
        os.replace(chunk, target)
        target.with_suffix(".reason.txt").write_text(reason.splitlines()[0] + "\n")
        warnings.warn(
            f"Journal batch {chunk} cannot be merged ({reason.splitlines()[0]}); set aside as {target}.",
            stacklevel=3,
        )

    def _write_catalogue(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}{TMP_PREFIX}{os.getpid()}")
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs.update(format=FORMAT, version=VERSION, kind="catalogue", folder=self.folder.name)
        _durable_replace(tmp, self.path)

    def _write_result(self, record: StoredRun) -> None:
        path = f"results/{record.metric}/{record.run_id}"
        final = self._result_file(path)
        tmp = _mkdir_parent(final.with_name(f"{TMP_PREFIX}{os.getpid()}-{next(_temporaries)}.h5"))
        try:
            with h5py.File(tmp, "w", locking=False) as f:
                f.attrs.update(format=FORMAT, version=VERSION, kind="result", path=path)
                f.attrs["payload"] = json_text(record.payload)
                for name, array in record.arrays.items():
                    array = np.asarray(array)
                    f.create_dataset(name, data=array, fletcher32=array.ndim > 0 and array.size > 0)
            _durable_replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _upgrade(self) -> None:
        """Turn a 0.1 store (one HDF5 file) into this layout, under the exclusive lock. The folder is
        written first and the catalogue renamed over the old file last: a kill leaves the 0.1 file, and
        the partial folder is removed at the next try."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            with h5py.File(self.path, "r", locking=False) as old:
                for path in _v01_paths(old):
                    if path.startswith("attributions/"):
                        writer = _SegmentWriter(
                            self._group_dir(path), path, _provenance_attrs(old[path]), self
                        )
                        writer.copy_from(old[path])
                        if writer.n:
                            writer.commit(writer.folder / _segment_name(1, 1))
                        else:  # an empty group: nothing to keep
                            writer.discard()
                    else:
                        _, metric, run_id = path.split("/")
                        payload = json.loads(old[path].attrs["payload"])
                        self._write_result(StoredRun(metric, run_id, payload, _datasets(old[path])))
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(
                f"Cannot upgrade the 0.1 store '{self.path}' ({exc}); it is left as it was: "
                "check it with the attribench release that wrote it."
            ) from None
        self._write_catalogue()

    # -- leftovers ---------------------------------------------------------------------------------

    def _leftovers(self) -> list[Path]:
        """Files of interrupted commits and journal writes; only safe to delete under the exclusive lock."""
        found = [*self.path.parent.glob(f".{self.path.name}.merge*")]  # 0.1's whole-store copies
        found += self.path.parent.glob(f".{self.path.name}{TMP_PREFIX}*")
        if self.folder.is_dir():
            found += self.folder.rglob(f"{TMP_PREFIX}*")
            for folder in self._group_dirs():
                live = set(_live_segments(folder))
                found += [p for p in folder.glob("seg-*.h5") if p not in live]  # spanned by a compaction
        if self.journal_dir.is_dir():
            found += self.journal_dir.glob("*/*.tmp*")
        return sorted(found)

    @staticmethod
    def _remove(paths: Sequence[Path]) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------------

    def reader(self, key: GroupKey) -> GroupReader:
        """The group opened for reading many batches (a metric's); use as a context manager."""
        return self._open_group(key.path)

    def _open_group(self, path: str) -> GroupReader:
        if not self._ready():
            return GroupReader(self._group_dir(path), path)
        with self.lock(shared=True):  # a commit may be compacting: open a consistent set of segments
            return GroupReader(self._group_dir(path), path)

    def read(self, key: GroupKey, index: Sequence[int] | np.ndarray) -> Stored:
        """Attributions for `index` (every one must be in the store; run `merge()` first)."""
        with self.reader(key) as reader:
            return reader.read(index)

    def groups(self) -> list[dict[str, Any]]:
        """Every attribution group and result run, with its size (`n` rows, `bytes` on disk: its live
        segments or its results file) and provenance."""
        if not self._ready():
            return []
        described = []
        with self.lock(shared=True):
            for folder in self._group_dirs():
                with GroupReader(folder) as reader:
                    if reader.segments:
                        bytes_on_disk = sum(p.stat().st_size for p in reader.segments)
                        described.append({**reader.describe(), "bytes": bytes_on_disk})
            for file in self._result_files():
                with _open_result(file) as f:
                    described.append(
                        {
                            "path": f.attrs["path"],
                            "kind": "result",
                            "n": len(f),
                            "shape": [],
                            "bytes": file.stat().st_size,
                            "attrs": _read_attrs(f),
                        }
                    )
        return sorted(described, key=lambda g: (g["kind"] != "attributions", g["path"]))

    def resolve(self, given: str) -> str:
        """The full path of the group or run `given` names: a path as `store ls` prints it, or, when it
        names exactly one attribution group, the tail of its names without their hashes (`methods.ig`,
        `core.toy_cnn/methods.ig`, `core.toy/core.toy_cnn/methods.ig`)."""
        if given.startswith(("attributions/", "results/")):
            return given  # a full path: `show`/`export` say if it is not there, without listing the store
        described = self.groups()
        wanted = given.strip("/").split("/")
        found = [
            g["path"]
            for g in described
            if g["kind"] == "attributions"
            and [part.split("@")[0] for part in g["path"].split("/")[1:]][-len(wanted) :] == wanted
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"No group '{given}' in '{self.path}'; see `attribench store ls`.")
        raise StoreError(
            f"'{given}' names {len(found)} groups in '{self.path}' ({', '.join(found)}); name the dataset "
            "and model too (dataset/model/explainer) or give the full path."
        )

    def show(self, path: str) -> dict[str, Any]:
        """The provenance of a group, with a summary of its diagnostics (if any) under "diagnostics"."""
        if self._ready():
            with self.lock(shared=True):
                if path.startswith("results/") and self._result_file(path).exists():
                    with _open_result(self._result_file(path)) as f:
                        return _read_attrs(f)
                with GroupReader(self._group_dir(path), path) as reader:
                    if reader.segments:
                        summary = reader.diagnostics_summary()
                        return {**reader.provenance(), **({"diagnostics": summary} if summary else {})}
        raise StoreError(f"No group '{path}' in '{self.path}'; see `attribench store ls`.")

    def runs(self, metric: str | None = None) -> list[StoredRun]:
        """The result runs (of one qualified metric, e.g. `smerf.afl`, or all) with their arrays, oldest
        first (run ids are UTC timestamps); read under the shared lock, so a commit is never seen half-done.
        `StoredRun.results` gives each run's results as `Result`s."""
        if not self._ready():
            return []
        runs = []
        with self.lock(shared=True):
            for file in self._result_files():
                with _open_result(file) as f:
                    _, found, run_id = str(f.attrs["path"]).split("/", 2)
                    if metric is None or found == metric:
                        runs.append(StoredRun(found, run_id, _payload(f, found, run_id), _datasets(f)))
        return sorted(runs, key=lambda run: (run.run_id, run.metric))

    def pending_chunks(self) -> int:
        return len(self._journal_chunks())

    def nbytes(self) -> int:
        """Bytes on disk: the catalogue and every group and result file."""
        files = [self.path, *(self.folder.rglob("*") if self.folder.is_dir() else [])]
        return sum(p.stat().st_size for p in files if p.is_file())

    def verify(self) -> Verification:
        """Damage (problems: unreadable files, checksum errors, inconsistent or duplicate rows) and normal
        states worth a note (journal not merged yet, batches set aside, leftovers of interrupted commits)."""
        result = Verification()
        if self._ready():
            with self.lock(shared=True):
                for folder in self._group_dirs():
                    result.problems += _verify_group(folder)
                for file in self._result_files():
                    result.problems += _verify_file(file, f"results file {file.name}")
                leftovers = self._leftovers()
        else:
            leftovers = []
        if self.pending_chunks():
            result.notes.append(
                f"{self.pending_chunks()} journalled batches not merged yet (the next `attribench run` "
                "on this store merges them)"
            )
        rejected = sorted((self.journal_dir / REJECTED).glob("*.npz"))
        if rejected:
            result.notes.append(
                f"{len(rejected)} journal batches set aside as un-mergeable in "
                f"{self.journal_dir / REJECTED} (reasons in the .reason.txt files; delete them when read)"
            )
        if leftovers:
            size = sum(p.stat().st_size for p in leftovers if p.is_file()) / 2**20
            result.notes.append(
                f"{len(leftovers)} leftover files of interrupted commits ({size:.1f} MiB); "
                "the next `attribench run` on this store removes them"
            )
        return result

    def export(self, path: str, out: str | os.PathLike[str]) -> Path:
        """Write one attribution group (arrays + provenance JSON) to an `.npz` file, streamed segment by
        segment (the group is never in memory whole)."""
        out = Path(out)
        with self._open_group(path) as reader:
            if not reader.segments:
                raise StoreError(
                    f"No attribution group '{path}' in '{self.path}'; see `attribench store ls`."
                )
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                for name in reader.columns():
                    reader.stream_column(name, archive)
                with archive.open("provenance.npy", "w") as handle:
                    np.lib.format.write_array(handle, np.array(json.dumps(reader.provenance(), default=str)))
        return out


class GroupReader:
    """One attribution group open for reading: its segments stay open and its index is sorted once, so
    reading a batch costs one `searchsorted` and the chunks of the rows asked for."""

    def __init__(self, folder: Path, path: str | None = None):
        self.segments = _live_segments(folder) if folder.is_dir() else []
        self.files: list[h5py.File] = []
        try:
            for segment in self.segments:
                self.files.append(h5py.File(segment, "r", locking=False, rdcc_nbytes=CHUNK_CACHE_BYTES))
            parts = [f["index"][()] for f in self.files]
        except (OSError, KeyError) as exc:
            self.close()
            raise StoreError(
                f"Attribution group {path or folder.name} is damaged ({exc}); "
                "see `attribench store verify` for what to delete."
            ) from None
        self.path = path or (str(self.files[0].attrs["path"]) if self.files else folder.name)
        self.index = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self._segment = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        self._row = np.concatenate([np.arange(len(p)) for p in parts]) if parts else self.index
        self._order = np.argsort(self.index, kind="stable")
        self._sorted = self.index[self._order]
        self.map_shape = tuple(self.files[0]["attribution"].shape[1:]) if self.files else None
        self._open_datasets: list[dict[str, h5py.Dataset]] | None = None

    @property
    def _datasets(self) -> list[dict[str, h5py.Dataset]]:
        """Each segment's columns by name, looked up once (h5py's lookup by name is slow), when first read."""
        if self._open_datasets is None:
            names = self.columns()
            self._open_datasets = [{name: f[name] for name in names if name in f} for f in self.files]
        return self._open_datasets

    def __enter__(self) -> GroupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self.files:
            f.close()

    def diagnostic_names(self) -> list[str]:
        return sorted({name for f in self.files for name in _diagnostic_names(f)})

    def columns(self) -> list[str]:
        return [*COLUMNS, *(f"{DIAGNOSTICS}/{name}" for name in self.diagnostic_names())]

    def read(self, index: Sequence[int] | np.ndarray) -> Stored:
        """Attributions for `index`, in that order (duplicates allowed)."""
        index = np.asarray(index, dtype=np.int64)
        if not self.files:
            raise StoreError(f"No attributions for {self.path} in the store; run the metric first.")
        position = np.minimum(np.searchsorted(self._sorted, index), len(self._sorted) - 1)
        absent = self._sorted[position] != index
        if absent.any():
            raise StoreError(f"{int(absent.sum())} indices of {self.path} are not in the store.")
        flat = self._order[position]
        segment, row = self._segment[flat], self._row[flat]
        columns = {name: self._empty(name, len(index)) for name in self.columns() if name != "index"}
        for s in np.unique(segment):
            where = segment == s
            for name, out in columns.items():
                if name in self._datasets[s]:
                    try:
                        out[where] = _take(self._datasets[s][name], row[where])
                    except OSError as exc:  # e.g. a checksum that does not match
                        raise StoreError(
                            f"Cannot read {name} of {self.path} from {self.segments[s].name} ({exc}); "
                            "see `attribench store verify` for what to delete."
                        ) from None
        prefix = f"{DIAGNOSTICS}/"
        diagnostics = {k.removeprefix(prefix): v for k, v in columns.items() if k.startswith(prefix)}
        fields = (columns[name] for name in ("attribution", "target", "prediction", "nonfinite"))
        return Stored(index, *fields, diagnostics=diagnostics)

    def _empty(self, name: str, n: int) -> np.ndarray:
        if name.startswith(DIAGNOSTICS):
            return np.full(n, np.nan, np.float32)
        dataset = self._datasets[0][name]
        return np.empty((n, *dataset.shape[1:]), dtype=dataset.dtype)

    def stream_column(self, name: str, archive: zipfile.ZipFile) -> None:
        """Write column `name` of every segment into `archive` as `<name>.npy`, a block at a time."""
        source = next(f[name] for f in self.files if name in f)
        dtype, shape = source.dtype, (len(self.index), *source.shape[1:])
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            for f in self.files:
                n = f["index"].shape[0]
                for start in range(0, n, ROW_CHUNK):
                    stop = min(n, start + ROW_CHUNK)
                    block = f[name][start:stop] if name in f else np.full(stop - start, np.nan, dtype)
                    handle.write(np.ascontiguousarray(block, dtype=dtype).tobytes())

    def provenance(self) -> dict[str, Any]:
        """The group's provenance (from its first segment) and its count of non-finite maps."""
        count = sum(int(f.attrs.get("nonfinite_count", 0)) for f in self.files)
        return {**_read_attrs(self.files[0]), "nonfinite_count": count}

    def diagnostics_summary(self) -> dict[str, dict[str, Any]]:
        """Per diagnostic: maps with a value (`n`), their median and max, the note."""
        summary: dict[str, dict[str, Any]] = {}
        for name in self.diagnostic_names():
            column = f"{DIAGNOSTICS}/{name}"
            values = np.concatenate([f[column][()] for f in self.files if column in f])
            values = values[np.isfinite(values)]
            notes = [f[column].attrs.get("note") for f in self.files if column in f]
            summary[name] = {
                "n": len(values),
                "median": float(np.median(values)) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
                "note": next((str(n) for n in reversed(notes) if n), None),
            }
        return summary

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": "attributions",
            "n": len(self.index),
            "shape": list(self.map_shape or ()),
            "diagnostics": self.diagnostics_summary(),
            "attrs": self.provenance(),
        }


class _SegmentWriter:
    """A new segment written under a temporary name; `commit()` makes it durable and renames it in."""

    def __init__(self, folder: Path, path: str, provenance: Mapping[str, Any], store: AttributionStore):
        self.folder, self.compression = folder, store.compression
        self.tmp = _mkdir_parent(folder / f"{TMP_PREFIX}{os.getpid()}-{next(_temporaries)}.h5")
        # chunks stay in the cache until they are full: each is compressed and checksummed once
        self.file = h5py.File(self.tmp, "w", locking=False, rdcc_nbytes=CHUNK_CACHE_BYTES)
        self.file.attrs.update(format=FORMAT, version=VERSION, kind="attributions", path=path)
        self.file.attrs.update(provenance)
        self.n = 0
        # open datasets by name: HDF5 flushes a dataset's chunk cache when its last handle closes, which
        # would write (and checksum) a partly filled chunk again at every append
        self.columns: dict[str, h5py.Dataset] = {}

    def append(
        self, rows: Mapping[str, np.ndarray], diagnostics: Mapping[str, np.ndarray], notes: Mapping[str, str]
    ) -> None:
        """Add rows (the `COLUMNS`) and their diagnostics; a diagnostic missing on either side is NaN."""
        f, added, columns = self.file, len(rows["index"]), self.columns
        if not columns:
            shape = rows["attribution"].shape[1:]
            per_chunk = max(1, CHUNK_BYTES // max(1, 4 * int(np.prod(shape))))
            columns["attribution"] = f.create_dataset(
                "attribution", shape=(0, *shape), maxshape=(None, *shape), dtype="float32",
                chunks=(per_chunk, *shape), compression=self.compression,
                shuffle=self.compression is not None, fletcher32=True,
            )  # fmt: skip
            for name in ROW_FIELDS:
                columns[name] = _column(f, name, np.asarray(rows[name]).dtype)
        for name in COLUMNS:
            _extend(columns[name], rows[name])
        for name in sorted(
            {*diagnostics, *(c.removeprefix(f"{DIAGNOSTICS}/") for c in columns if c.startswith(DIAGNOSTICS))}
        ):
            key = f"{DIAGNOSTICS}/{name}"
            if key not in columns:  # first reported now: NaN for the rows before
                columns[key] = _column(f, key, np.float32, self.n)
            _extend(columns[key], diagnostics.get(name, np.full(added, np.nan, np.float32)))
            if notes.get(name):
                columns[key].attrs["note"] = notes[name]
        self.n += added

    def copy_from(self, group: h5py.Group) -> None:
        """Append every row of `group` (a segment, or a 0.1 store's group), a block at a time."""
        names = _diagnostic_names(group)
        notes = {n: str(group[f"{DIAGNOSTICS}/{n}"].attrs.get("note", "")) for n in names}
        total = group["index"].shape[0]
        for start in range(0, total, ROW_CHUNK):
            block = slice(start, min(total, start + ROW_CHUNK))
            self.append(
                {name: group[name][block] for name in COLUMNS},
                {n: group[f"{DIAGNOSTICS}/{n}"][block] for n in names},
                notes,
            )

    def commit(self, final: Path) -> None:
        self.file.attrs["nonfinite_count"] = int(self.columns["nonfinite"][()].sum()) if self.n else 0
        self.columns.clear()
        self.file.close()
        _durable_replace(self.tmp, final)

    def discard(self) -> None:
        self.columns.clear()
        with contextlib.suppress(Exception):
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def _load_batch(chunk: Path) -> _Batch:
    """A journal file, checked: every column as long as `index`, provenance storable as HDF5 attributes."""
    with np.load(chunk) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    prefix = f"{DIAGNOSTICS}/"
    diagnostics = {k.removeprefix(prefix): arrays.pop(k) for k in list(arrays) if k.startswith(prefix)}
    rows = {name: arrays[name] for name in COLUMNS}
    rows["index"] = rows["index"].astype(np.int64, casting="same_kind")
    lengths = {len(v) for v in [*rows.values(), *diagnostics.values()]}
    if len(lengths) != 1 or rows["attribution"].ndim < 2:
        raise ValueError(f"columns of different lengths {sorted(lengths)}")
    if short_hash(meta["path"], 16) != chunk.parent.name:
        raise ValueError(f"it names group {meta['path']}, not the one of its folder")
    _check_storable(json.dumps(meta["provenance"], sort_keys=True, default=str))
    provenance = {k: _attr(v) for k, v in meta["provenance"].items()}
    return _Batch(meta["path"], provenance, dict(meta.get("notes", {})), rows, diagnostics)


@contextlib.contextmanager
def _open_result(file: Path) -> Iterator[h5py.File]:
    """A result run's file, or a one-line StoreError if it cannot be read."""
    try:
        handle = h5py.File(file, "r", locking=False)
    except OSError as exc:
        raise StoreError(
            f"Result file {file} is damaged ({exc}); see `attribench store verify` for what to delete."
        ) from None
    with handle:
        yield handle


@functools.lru_cache(maxsize=64)
def _check_storable(provenance: str) -> None:
    """Fail (here, not half-way through a commit) if a provenance cannot be stored as HDF5 attributes;
    once per distinct provenance (every batch of a task has the same)."""
    with h5py.File(f"check-{short_hash(provenance)}", "w", driver="core", backing_store=False) as f:
        f.attrs.update({k: _attr(v) for k, v in json.loads(provenance).items()})


def _verify_group(folder: Path) -> list[str]:
    """Problems of one attribution group: unreadable segments, checksums, lengths, duplicates, counts."""
    problems: list[str] = []
    name = folder.name
    seen: list[np.ndarray] = []
    for segment in _live_segments(folder):
        with contextlib.suppress(OSError), h5py.File(segment, "r", locking=False) as f:
            name = str(f.attrs.get("path", name))
        found = _verify_file(segment, f"{name} (segment {segment.name})")
        problems += found
        if found:
            continue
        with h5py.File(segment, "r", locking=False) as f:
            n = f["index"].shape[0]
            lengths = {
                c: f[c].shape[0] for c in (*COLUMNS, *(f"{DIAGNOSTICS}/{d}" for d in _diagnostic_names(f)))
            }
            if set(lengths.values()) != {n}:
                problems.append(f"{name}: datasets of {segment.name} have different lengths {lengths}")
                continue
            bad = 0
            for start in range(0, n, ROW_CHUNK):
                rows = f["attribution"][start : start + ROW_CHUNK]
                bad += int((~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)).sum())
            recorded = int(f["nonfinite"][()].sum())
            if bad != recorded:
                problems.append(f"{name}: {bad} non-finite rows but {recorded} recorded in {segment.name}")
            seen.append(f["index"][()])
    if seen:
        index = np.concatenate(seen)
        if len(np.unique(index)) != len(index):
            problems.append(f"{name}: duplicate indices")
    return problems


def _verify_file(file: Path, name: str) -> list[str]:
    """Read every byte of every dataset of `file` (Fletcher32 checks each chunk); one line per damage."""
    problems: list[str] = []
    try:
        with h5py.File(file, "r", locking=False) as f:
            if f.attrs.get("format") != FORMAT:
                return [f"{name}: {file} has no attribench format marker"]
            datasets: list[h5py.Dataset] = []
            f.visititems(lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
            for dataset in datasets:
                try:
                    _read_through(dataset)
                except OSError as exc:
                    problems.append(
                        f"{name}: {dataset.name.lstrip('/')} is damaged ({str(exc).splitlines()[0]}); "
                        f"delete {file} to recompute it"
                    )
    except OSError as exc:
        problems.append(f"{name}: {file} is unreadable ({exc}); delete it to recompute it")
    return problems


def _read_through(dataset: h5py.Dataset) -> None:
    """Read all of `dataset`, a block at a time (each chunk's checksum is checked on the way)."""
    if not dataset.shape:
        dataset[()]
        return
    for start in range(0, dataset.shape[0], ROW_CHUNK):
        dataset[start : start + ROW_CHUNK]


def _live_segments(folder: Path) -> list[Path]:
    """A group's segments in commit order, leaving out those spanned by a compacted segment."""
    spans = [(_span(p), p) for p in folder.glob("seg-*.h5") if SEGMENT.fullmatch(p.name)]
    live, reach = [], 0
    for (_, last), path in sorted(spans, key=lambda s: (s[0][0], -s[0][1])):
        if last > reach:
            live.append(path)
            reach = last
    return live


def _span(segment: Path) -> tuple[int, int]:
    match = SEGMENT.fullmatch(segment.name)
    assert match is not None
    return int(match[1]), int(match[2])


def _segment_name(first: int, last: int) -> str:
    return f"seg-{first:012d}-{last:012d}.h5"


def _next_segment(folder: Path) -> int:
    return max((_span(p)[1] for p in folder.glob("seg-*.h5") if SEGMENT.fullmatch(p.name)), default=0) + 1


def _take(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """`dataset[rows]` for any rows (unsorted, repeated), read as contiguous slices."""
    if len(rows) and (np.diff(rows) == 1).all():  # the usual case: one run of consecutive rows
        return dataset[int(rows[0]) : int(rows[-1]) + 1]
    unique, inverse = np.unique(rows, return_inverse=True)
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    parts = [dataset[int(run[0]) : int(run[-1]) + 1] for run in np.split(unique, breaks)]
    return np.concatenate(parts)[inverse]


def _column(f: h5py.Group, name: str, dtype: Any, fill: int = 0) -> h5py.Dataset:
    data = np.full(fill, np.nan, np.float32) if fill else np.zeros(0, dtype)
    return f.create_dataset(
        name, data=data, maxshape=(None,), dtype=dtype, chunks=(ROW_CHUNK,), fletcher32=True
    )


def _extend(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def _durable_replace(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it to `final`, fsync the folder: after this, `final` survives a power cut."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    descriptor = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _v01_paths(f: h5py.File) -> list[str]:
    """A 0.1 store's attribution groups (three levels under /attributions) and result runs (two under
    /results)."""
    paths = []
    for top, depth in (("attributions", 3), ("results", 2)):
        level = [top] if top in f else []
        for _ in range(depth):
            level = [f"{p}/{child}" for p in level for child in f[p]]
        paths += level
    return paths


def _payload(f: h5py.File, metric: str, run_id: str) -> dict[str, Any]:
    try:
        return json.loads(f.attrs["payload"])
    except (KeyError, ValueError) as exc:
        raise StoreError(
            f"Result run results/{metric}/{run_id} has no readable payload ({exc}); "
            "check the store with `attribench store verify`."
        ) from None


def _datasets(group: h5py.Group) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    group.visititems(
        lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
    )
    return arrays


def _diagnostic_names(group: h5py.Group) -> list[str]:
    return sorted(group[DIAGNOSTICS]) if DIAGNOSTICS in group else []


def _mkdir_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _attr(value: Any) -> Any:
    """A provenance value as an HDF5 attribute: numbers and text as they are, ints beyond int64 and
    anything else as JSON text."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if -(2**63) <= int(value) < 2**63 else json.dumps(int(value))
    return value if isinstance(value, (str, float, bool, np.generic)) else json.dumps(value, default=str)


def _provenance_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: v for k, v in obj.attrs.items() if k not in MARKER_ATTRS}


def _read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in _provenance_attrs(obj).items():
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, str) and v[:1] in "{[":
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        out[k] = v
    return out
