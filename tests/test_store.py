"""The HDF5 store: round trips, resume from the journal, invalid values, integrity checks, locking."""

import h5py
import numpy as np
import pytest

from attribench_core.errors import StoreError
from attribench_core.store import AttributionStore, GroupKey, ResultRecord

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
    assert store.verify() == []


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
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temporary copy removed
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
    assert store.verify() == []


def test_verify_reports_inconsistent_groups(tmp_path):
    store = AttributionStore(tmp_path / "s.h5")
    write(store, [0, 1])
    store.merge()
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f[KEY.path]["target"].resize(1, axis=0)
    assert "datasets have different lengths" in store.verify()[0]
    write(store, [5])
    assert store.verify()[-1] == "1 journalled batches not merged yet (re-run to merge them)"


def test_results_and_export(tmp_path):
    store = AttributionStore(tmp_path / "s.h5", compression="gzip")
    write(store, [0, 1])
    store.merge(
        [
            ResultRecord(
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
    assert store.verify() == []
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
