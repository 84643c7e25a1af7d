"""The HDF5 store: round trips, resume from the journal, invalid values, integrity checks, locking, crash
safety of commits, faults (foreign files, flipped bytes, un-mergeable batches), the 0.1 upgrade."""

import json
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from attribench_core.cli import cli
from attribench_core.errors import StoreError
from attribench_core.identity import short_hash
from attribench_core.result import StoredRun
from attribench_core.store import AttributionStore, GroupKey

KEY = GroupKey("core.toy@abc", "core.toy_cnn@def", "methods.ig@123")
PROVENANCE = {"explainer": "methods.ig", "params": {"steps": 8}, "seed": 3}


def write(store, index, value=None, key=KEY):
    index = np.asarray(index)
    attribution = np.stack([np.full((2, 4, 4), i if value is None else value, np.float32) for i in index])
    store.write_batch(key, PROVENANCE, index, attribution, index % 3, index % 2)


def test_round_trip_in_any_order_with_provenance(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [5, 1, 9])
    write(store, [2, 7])
    store.merge()
    got = store.read(KEY, [9, 2, 5, 9])
    assert got.attribution[:, 0, 0, 0].tolist() == [9, 2, 5, 9]
    assert got.target.tolist() == [0, 2, 2, 0]
    assert got.prediction.tolist() == [1, 0, 1, 1]
    assert store.show(KEY.path)["params"] == {"steps": 8}
    assert store.show(KEY.path)["seed"] == 3
    assert store.pending_chunks() == 0


def test_journalled_batches_count_as_done_before_the_merge(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    assert store.missing(KEY, [0, 1, 2, 3]).tolist() == [2, 3]
    assert not (tmp_path / "s.h5").exists()  # nothing written in place
    store.merge()
    write(store, [1, 2])  # 1 is a duplicate of what is stored: merged once
    store.merge()
    assert store.missing(KEY, range(4)).tolist() == [3]
    assert store.groups()[0]["n"] == 3
    assert store.verify().ok and store.verify().notes == []


def test_a_crash_during_merge_leaves_the_old_store_and_the_journal(tmp_path, monkeypatch):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0])
    store.merge()
    write(store, [1])

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("attribench_core.store.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.merge()
    monkeypatch.undo()
    assert store.groups()[0]["n"] == 1
    assert store.pending_chunks() == 1
    assert [p.name for p in tmp_path.rglob(".*")] == []  # the temporary segment is removed
    store.merge()
    assert store.groups()[0]["n"] == 2


def test_non_finite_attributions_are_recorded_not_hidden(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    write(store, [2], value=np.nan)
    write(store, [3], value=np.inf)
    store.merge()
    assert store.read(KEY, [0, 1, 2, 3]).nonfinite.tolist() == [False, False, True, True]
    assert store.show(KEY.path)["nonfinite_count"] == 2
    assert store.verify().ok and store.verify().notes == []


def test_verify_reports_inconsistent_groups(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    store.merge()
    (segment,) = segments(store)
    with h5py.File(segment, "a") as f:
        f["target"].resize(1, axis=0)
    assert "datasets of seg-000000000001-000000000001.h5 have different lengths" in store.verify().problems[0]
    write(store, [5])
    assert store.verify().notes == [
        "1 journalled batches not merged yet (the next `attribench run` on this store merges them)"
    ]


def test_results_and_export(tmp_path):
    store = AttributionStore(tmp_path / "s.h5", compression="gzip")
    write(store, [0, 1])
    store.merge(
        [
            StoredRun(
                "core.relevance_mass",
                "run1",
                {"metric": "core.relevance_mass"},
                {"methods.ig/relevance_mass": np.array([0.5, 0.25])},
            )
        ]
    )
    kinds = {g["path"]: g["kind"] for g in store.groups()}
    assert kinds == {KEY.path: "attributions", "results/core.relevance_mass/run1": "result"}
    out = store.export(KEY.path, tmp_path / "g.npz")
    with np.load(out) as data:
        assert data["attribution"].shape == (2, 2, 4, 4)
        assert "methods.ig" in str(data["provenance"])
    with pytest.raises(StoreError, match="No attribution group 'nope'"):
        store.export("nope", tmp_path / "x.npz")


def test_unusable_paths_give_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match=r"Store folder '.*missing' does not exist"):
        AttributionStore(tmp_path / "missing" / "s.h5").check()
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="is not a readable attribench store"):
        AttributionStore(garbage).check()
    assert garbage.read_bytes() == b"not hdf5 at all"
    with pytest.raises(StoreError, match="Unknown compression 'zstd'"):
        AttributionStore(tmp_path / "s.h5", compression="zstd")


def test_a_held_lock_makes_the_second_writer_fail_clearly(tmp_path):
    first = AttributionStore(tmp_path / "s.h5")
    second = AttributionStore(tmp_path / "s.h5", lock_timeout=0.3)
    write(second, [0])
    with first.lock(), pytest.raises(StoreError, match="locked by another attribench process"):
        second.merge()
    second.merge()
    assert first.groups()[0]["n"] == 1


def write_diagnosed(store, index, notes=None, **diagnostics):
    """A batch of zero maps with per-map diagnostics (name -> values)."""
    index = np.asarray(index)
    zeros = np.zeros(len(index), np.int64)
    attribution = np.zeros((len(index), 2, 4, 4), np.float32)
    store.write_batch(KEY, PROVENANCE, index, attribution, zeros, zeros, diagnostics=diagnostics, notes=notes)


def test_diagnostics_stay_aligned_with_the_index_through_journal_resume_and_merge(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write_diagnosed(store, [5, 1], {"summation_gap": "F.gelu has no rule"}, summation_gap=[0.5, 0.125])
    write(store, [7])  # a batch without the diagnostic: NaN there
    store.merge()
    # resumed: a batch journalled but not merged, computed again with a stored image (merged once)
    write_diagnosed(store, [2, 5], summation_gap=[0.25, 9.0])
    assert store.missing(KEY, [1, 2, 5, 7, 8]).tolist() == [8]
    store.merge()
    got = store.read(KEY, [7, 2, 5, 1])
    np.testing.assert_array_equal(got.diagnostics["summation_gap"], [np.nan, 0.25, 0.5, 0.125])
    assert store.verify().ok and store.verify().notes == []
    (group,) = store.groups()
    assert group["diagnostics"] == {
        "summation_gap": {"n": 3, "median": 0.25, "max": 0.5, "note": "F.gelu has no rule"}
    }
    assert store.show(KEY.path)["diagnostics"]["summation_gap"]["n"] == 3
    with np.load(store.export(KEY.path, tmp_path / "g.npz")) as exported:
        order = np.argsort(exported["index"])
        np.testing.assert_array_equal(exported["diag/summation_gap"][order], [0.125, 0.25, 0.5, np.nan])


def test_a_diagnostic_first_reported_later_is_nan_for_earlier_maps(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    store.merge()
    write_diagnosed(store, [2], spread=[3.0])
    store.merge()
    np.testing.assert_array_equal(store.read(KEY, [0, 1, 2]).diagnostics["spread"], [np.nan, np.nan, 3.0])
    assert store.read(KEY, [2]).attribution.shape == (1, 2, 4, 4)


def segments(store, key=KEY):
    return sorted((store.folder / "attributions" / short_hash(key.path, 16)).glob("seg-*.h5"))


def verify_cli(path):
    return CliRunner().invoke(cli, ["store", "verify", "--store", str(path)])


def snapshot(store):
    """Everything a reader sees: groups with sizes, every stored map in index order, every result."""
    groups = [(g["path"], g["n"]) for g in store.groups()]
    maps = {}
    for path, _ in groups[: sum(path.startswith("attributions/") for path, _ in groups)]:
        with store.reader(GroupKey(*path.split("/")[1:])) as reader:
            maps[path] = reader.read(np.sort(reader.index)).attribution.tolist()
    results = sorted((r.metric, r.run_id, json.dumps(r.payload)) for r in store.runs())
    return groups, maps, results


def test_a_commit_adds_one_segment_and_rewrites_nothing_committed(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    store.merge()
    (first,) = segments(store)
    before = first.read_bytes()
    write(store, [2])
    write(store, [1, 3])  # 1 is stored already: only 3 is new
    store.merge()
    assert [p.name for p in segments(store)] == [first.name, "seg-000000000002-000000000002.h5"]
    assert first.read_bytes() == before
    assert store.read(KEY, [3, 0, 2]).attribution[:, 0, 0, 0].tolist() == [3, 0, 2]
    with h5py.File(store.path) as catalogue:
        assert dict(catalogue.attrs) == {"format": "attribench-store", "version": 2, "kind": "catalogue",
                                         "folder": "s.h5.d"}  # fmt: skip


def test_many_small_commits_are_compacted_and_read_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr("attribench_core.store.COMPACT_AFTER", 4)
    store = AttributionStore(tmp_path / "s.h5")
    for i in range(6):
        write_diagnosed(store, [10 - i], spread=[float(i)]) if i == 2 else write(store, [10 - i])
        store.merge()
    names = [p.name for p in segments(store)]
    assert names == ["seg-000000000001-000000000004.h5", "seg-000000000005-000000000005.h5",
                     "seg-000000000006-000000000006.h5"]  # fmt: skip
    got = store.read(KEY, [5, 10, 8, 7])
    assert got.attribution[:, 0, 0, 0].tolist() == [5, 10, 0, 7]
    np.testing.assert_array_equal(got.diagnostics["spread"], [np.nan, np.nan, 2.0, np.nan])
    assert store.verify().ok


def test_a_commit_interrupted_at_any_rename_leaves_a_readable_store_that_the_next_commit_completes(
    tmp_path, monkeypatch
):
    other = GroupKey("core.toy@abc", "core.toy_cnn@def", "methods.grad@456")
    record = StoredRun("core.relevance_mass", "run1", {"n": 1}, {"methods.ig/mass": np.array([0.5])})

    def prepare(folder):
        folder.mkdir()
        store = AttributionStore(folder / "s.h5")
        write(store, [0, 1])
        store.merge()
        write(store, [2])
        write(store, [4], key=other)
        return store

    reference = prepare(tmp_path / "reference")
    before = snapshot(reference)
    calls = []
    real_replace = os.replace
    monkeypatch.setattr("attribench_core.store.os.replace", lambda *a: calls.append(a) or real_replace(*a))
    reference.merge([record])
    after = snapshot(reference)
    assert len(calls) == 3  # one segment per group, one result file
    for stage in range(len(calls)):
        store = prepare(tmp_path / f"stage{stage}")
        renames = []

        def crash(*args, stage=stage, renames=renames):
            if len(renames) == stage:
                raise KeyboardInterrupt  # as a kill at that instant: nothing after it happens
            renames.append(args)
            real_replace(*args)

        monkeypatch.setattr("attribench_core.store.os.replace", crash)
        with pytest.raises(KeyboardInterrupt):
            store.merge([record])
        monkeypatch.setattr("attribench_core.store.os.replace", real_replace)
        maps = snapshot(store)[1]
        assert maps[KEY.path] in (before[1][KEY.path], after[1][KEY.path])
        assert store.verify().ok
        store.merge([record])
        assert snapshot(store) == after
        assert list(store.folder.rglob(".tmp-*")) == []


def test_leftovers_of_killed_commits_are_noted_then_removed_at_the_next_commit(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0])
    store.merge()
    group = segments(store)[0].parent
    leftovers = [
        group / ".tmp-4242-0.h5",  # a segment being written when the commit was killed
        tmp_path / ".s.h5.merge4242",  # a whole-store copy of attribench 0.1
        store.journal_dir / short_hash(KEY.path, 16) / "000000000007-1.tmp4242",  # a journal write
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    result = verify_cli(store.path)
    assert result.exit_code == 0
    assert "note: 3 leftover files of interrupted commits" in result.output
    store.merge()
    assert not any(p.exists() for p in leftovers)
    assert store.verify().notes == []


def test_a_seed_beyond_int64_is_stored_as_text_and_later_runs_still_work(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    index = np.array([0, 1])
    maps = np.ones((2, 2, 4, 4), np.float32)
    store.write_batch(KEY, {**PROVENANCE, "seed": 99999999999999999999999}, index, maps, index, index)
    store.merge()
    assert store.show(KEY.path)["seed"] == "99999999999999999999999"
    write(store, [2])
    store.merge()
    assert store.groups()[0]["n"] == 3 and store.pending_chunks() == 0


def test_an_unmergeable_journal_batch_is_set_aside_and_the_rest_is_merged(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0])
    broken = store.journal_dir / short_hash(KEY.path, 16) / "000000000005-1.npz"
    broken.write_bytes(b"PK\x03\x04 not a whole npz")
    with pytest.warns(UserWarning, match=r"000000000005-1.npz cannot be merged \(BadZipFile"):
        store.merge()
    assert store.groups()[0]["n"] == 1 and store.pending_chunks() == 0
    rejected = store.journal_dir / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == [
        f"{broken.parent.name}-000000000005-1.npz",
        f"{broken.parent.name}-000000000005-1.reason.txt",
    ]
    assert store.missing(KEY, [0, 5]).tolist() == [5]  # computed again by the next run
    assert "1 journal batches set aside as un-mergeable" in store.verify().notes[0]
    write(store, [5])
    store.merge()
    assert store.groups()[0]["n"] == 2


def test_a_foreign_hdf5_file_is_refused_and_never_written(tmp_path):
    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("attributions", data=np.arange(3))
        f.attrs["creator"] = "another program"
    before = foreign.read_bytes()
    store = AttributionStore(foreign)
    with pytest.raises(StoreError, match=r"'.*other.h5' is an HDF5 file but not an attribench store"):
        store.check()
    write(store, [0])  # the journal is beside the file, never in it
    with pytest.raises(StoreError, match="not an attribench store"):
        store.merge()
    assert verify_cli(foreign).exit_code == 1
    assert foreign.read_bytes() == before and not store.folder.exists()


def test_flipped_bytes_are_caught_by_verify_naming_the_group(tmp_path):
    store = AttributionStore(tmp_path / "s.h5", compression="none")
    write(store, [0, 1, 2])
    store.merge()
    assert verify_cli(store.path).exit_code == 0
    (segment,) = segments(store)
    with h5py.File(segment, "r") as f:
        offset = f["attribution"].id.get_chunk_info(0).byte_offset
    data = bytearray(segment.read_bytes())
    data[offset + 40 : offset + 48] = bytes(b ^ 0x10 for b in data[offset + 40 : offset + 48])  # bit rot
    segment.write_bytes(bytes(data))
    (problem,) = store.verify().problems
    assert problem.startswith(f"{KEY.path} (segment {segment.name}): attribution is damaged")
    result = verify_cli(store.path)
    assert result.exit_code == 1 and KEY.path in result.output
    with pytest.raises(StoreError, match=f"Cannot read attribution of {KEY.path} from {segment.name}"):
        store.read(KEY, [0])


def test_verify_exit_codes_clean_pending_and_damaged(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0])
    store.merge()
    clean = verify_cli(store.path)
    assert (clean.exit_code, clean.output.strip()) == (0, f"{store.path}: OK")
    write(store, [1])
    pending = verify_cli(store.path)
    assert pending.exit_code == 0
    assert pending.output.splitlines() == [
        "note: 1 journalled batches not merged yet (the next `attribench run` on this store merges them)",
        f"{store.path}: OK",
    ]
    store.merge()
    segments(store)[-1].write_bytes(b"garbage")
    damaged = verify_cli(store.path)
    assert damaged.exit_code == 1 and "is unreadable" in damaged.output


def make_v01_store(path):
    """A store as attribench 0.1 wrote it: one HDF5 file, no format marker."""
    with h5py.File(path, "w") as f:
        group = f.create_group(KEY.path)
        group.create_dataset(
            "attribution",
            data=np.arange(3, dtype=np.float32)[:, None, None, None] * np.ones((3, 2, 4, 4), np.float32),
        )
        group.create_dataset("index", data=np.array([4, 2, 9]))
        group.create_dataset("target", data=np.array([1, 1, 0]))
        group.create_dataset("prediction", data=np.array([0, 1, 0]))
        group.create_dataset("nonfinite", data=np.zeros(3, bool))
        group.create_dataset("diag/gap", data=np.array([0.5, np.nan, 1.0], np.float32)).attrs["note"] = "why"
        group.attrs.update(explainer="methods.ig", params=json.dumps({"steps": 8}), seed=3, nonfinite_count=0)
        run = f.create_group("results/core.relevance_mass/run1")
        run.attrs["payload"] = json.dumps({"metric": "core.relevance_mass"})
        run.create_dataset("methods.ig/relevance_mass", data=np.array([0.5, 0.25]))
    (path.parent / f".{path.name}.merge77").write_bytes(b"x" * 100)  # 0.1's leftover


def test_a_0_1_store_is_upgraded_once_and_reads_the_same(tmp_path, monkeypatch):
    path = tmp_path / "old.h5"
    make_v01_store(path)
    real_replace = os.replace

    def fail_on_the_catalogue(tmp, final):
        if os.fspath(final) == os.fspath(path):
            raise KeyboardInterrupt
        real_replace(tmp, final)

    monkeypatch.setattr("attribench_core.store.os.replace", fail_on_the_catalogue)
    with pytest.raises(KeyboardInterrupt):
        AttributionStore(path).check()
    monkeypatch.undo()
    with h5py.File(path) as f:
        assert "format" not in f.attrs  # the upgrade's switch did not happen: still the 0.1 file
    store = AttributionStore(path)
    got = store.read(KEY, [9, 4])
    assert got.attribution[:, 0, 0, 0].tolist() == [2, 0] and got.target.tolist() == [0, 1]
    np.testing.assert_array_equal(got.diagnostics["gap"], [1.0, 0.5])
    assert store.show(KEY.path)["params"] == {"steps": 8}
    assert store.show(KEY.path)["diagnostics"]["gap"]["note"] == "why"
    (result,) = store.runs()
    assert result.payload == {"metric": "core.relevance_mass"}
    np.testing.assert_array_equal(result.arrays["methods.ig/relevance_mass"], [0.5, 0.25])
    with h5py.File(path) as f:
        assert f.attrs["format"] == "attribench-store" and f.attrs["version"] == 2
    write(store, [7])
    store.merge()
    assert store.missing(KEY, [2, 4, 7, 9, 11]).tolist() == [11]
    assert store.verify().ok and store.verify().notes == []
    assert not (tmp_path / ".old.h5.merge77").exists()


def test_a_damaged_result_file_is_damage_for_verify_and_a_one_line_error_for_readers(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    store.merge([StoredRun("core.relevance_mass", "run1", {"metric": "core.relevance_mass"})])
    (result,) = (store.folder / "results").glob("*.h5")
    result.write_bytes(b"garbage")
    (problem,) = store.verify().problems
    assert problem.startswith(f"results file {result.name}: {result} is unreadable")
    listed = CliRunner().invoke(cli, ["store", "ls", "--store", str(store.path)])
    assert listed.exit_code == 1 and f"Result file {result} is damaged" in listed.output
    assert len(listed.output.strip().splitlines()) == 1
