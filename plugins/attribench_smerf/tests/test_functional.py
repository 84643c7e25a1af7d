"""SMERF metric maths against the paper's worked example, hand-computed cases and numpy references."""

import math

import numpy as np
import pytest
import torch
from attribench_smerf import functional as fn

NAN = float("nan")


def _box(rows: slice, cols: slice, size: int = 64) -> torch.Tensor:
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, rows, cols] = True
    return mask


# Paper Fig. 14 / App. A.4.1: object A (primary, the 19×13 = 247-pixel letter box the paper's IOU selects)
# all 1s, object B (secondary, a 10×10 Box1) all 0.8, background 0.001, on a 64×64 image.
A, B = _box(slice(10, 29), slice(10, 23)), _box(slice(40, 50), slice(40, 50))
FIG14 = torch.full((1, 64, 64), 0.001).masked_fill(A, 1.0).masked_fill(B, 0.8)


def test_fig14_worked_example_without_blur():
    assert int(A.sum()) == 247
    pafl, safl = fn.afl(FIG14, A, B, blur=0, minmax=False)  # the paper's arithmetic: value / total value
    assert round(pafl.item(), 2) == 0.75 and round(safl.item(), 2) == 0.24
    total = 247 + 0.8 * 100 + 0.001 * (4096 - 347)
    assert pafl.item() == pytest.approx(247 / total) and safl.item() == pytest.approx(80 / total)
    # the default min-max step sends the background to 0: 247 / (247 + 100·0.799/0.999) = 0.7554
    pafl, safl = fn.afl(FIG14, A, B, blur=0)
    assert pafl.item() == pytest.approx(247 / (247 + 100 * 0.799 / 0.999))
    assert (pafl + safl).item() == pytest.approx(1.0)


def test_fig14_iou_selects_only_the_primary_object():
    objects, roles = fn.stack_objects({"a": A, "b": B}, [["a"]], [["b"]])
    for threshold in fn.THRESHOLDS:
        piou, siou = fn.iou(FIG14, objects, roles, blur=0, threshold=threshold)
        assert (piou.item(), siou.item()) == (1.0, 0.0)


# A 4×4 case for IOU: primary P = the top-left 2×2 (K = 4), secondary Q1 = (2,2) and Q2 = (2,3).
MAP = torch.tensor([[[5.0, 1, 1, 0], [1, 3, 3, 0], [0, 0, 2, 2], [0, 0, 0, 0]]])
P = torch.zeros(1, 4, 4, dtype=torch.bool)
P[0, :2, :2] = True
Q1, Q2 = torch.zeros_like(P), torch.zeros_like(P)
Q1[0, 2, 2], Q2[0, 2, 3] = True, True
OBJECTS, ROLES = fn.stack_objects({"p": P, "q1": Q1, "q2": Q2}, [["p"]], [["q1", "q2"]])


def test_iou_top_k_hand_computed_with_a_tie():
    # top 4: 5 (0,0), 3 (1,1), 3 (1,2), then the tied 2s: (2,2) comes first in row-major order
    chosen = fn.top_k(MAP, torch.tensor([4]))
    assert chosen[0].nonzero().tolist() == [[0, 0], [1, 1], [1, 2], [2, 2]]
    piou, siou = fn.iou(MAP, OBJECTS, ROLES, blur=0)
    assert piou.item() == pytest.approx(2 / 6)  # 2 shared pixels, union 4 + 4 - 2
    assert siou.item() == pytest.approx((1 / 4 + 0) / 2)  # Q1 is the tie winner, Q2 is not chosen
    # K from the secondary area (2): the top 2 miss both secondary objects
    assert fn.iou(MAP, OBJECTS, ROLES, blur=0, k_from="own")[1].item() == 0.0


def test_iou_histogram_threshold_hand_computed():
    # 10 bins of width 0.5 over [0, 5]; from the top the cumulative counts are 1 (the 5), 1, 1, 3 (the 3s),
    # 3, 5 (the 2s): the first to reach K = 4 is [2, 2.5), so the threshold 2 keeps 5 pixels
    chosen = fn.histogram_threshold(MAP, torch.tensor([4]))
    assert chosen[0].nonzero().tolist() == [[0, 0], [1, 1], [1, 2], [2, 2], [2, 3]]
    piou, siou = fn.iou(MAP, OBJECTS, ROLES, blur=0, threshold="histogram")
    assert piou.item() == pytest.approx(2 / 7) and siou.item() == pytest.approx(1 / 5)
    assert fn.histogram_threshold(MAP, torch.tensor([0]))[0].sum() == 1  # K = 0: the top bin
    constant = torch.full((1, 4, 4), 0.3)  # numpy widens a zero range by ±0.5: everything is kept
    assert fn.histogram_threshold(constant, torch.tensor([3])).all()


def test_mafl_hand_computed():
    maps = torch.tensor(
        [[[4.0, 2.0], [1.0, 1.0]]]
    )  # min-max [[1, 1/3], [0, 0]], sum 4/3 -> [[.75, .25], [0, 0]]
    primary = torch.tensor([[[True, False], [False, False]]])
    secondary = torch.tensor([[[False, True], [False, True]]])
    pmafl, smafl = fn.mafl(maps, primary, secondary, blur=0)
    assert (pmafl.item(), smafl.item()) == pytest.approx((0.75, 0.125))
    assert [v.item() for v in fn.afl(maps, primary, secondary, blur=0)] == pytest.approx([0.75, 0.25])


def test_blur_ceilings_from_the_research_notes():
    box1, box2 = _box(slice(20, 30), slice(20, 30)), _box(slice(40, 44), slice(40, 44))
    none = torch.zeros_like(box1)
    # uniform over Box1: per axis 58 of the 70 (10 pixels × 7 taps) blurred weights stay inside
    assert fn.afl(box1.double(), box1, none)[0].item() == pytest.approx((58 / 70) ** 2)  # 0.687
    point = _box(slice(24, 25), slice(24, 25)).double()
    assert fn.afl(point, box1, none)[0].item() == pytest.approx(1.0)
    # anything confined to Box2 keeps at most 16 of its 49 blurred pixels inside
    assert fn.afl(box2.double(), box2, none)[0].item() == pytest.approx(16 / 49)  # 0.327
    point = _box(slice(41, 42), slice(41, 42)).double()
    assert fn.afl(point, box2, none)[0].item() == pytest.approx(16 / 49)


def test_blur_border_is_reflect_101():
    maps = torch.zeros(1, 8, 8, dtype=torch.float64)
    maps[0, 1, 1] = 1.0
    blurred = fn.box_blur(maps, 3)
    # row -1 mirrors row 1 and column -1 mirrors column 1: (0,0)'s window sees (1,1) four times
    assert blurred[0, 0, 0].item() == pytest.approx(4 / 9)
    assert blurred[0, 1, 1].item() == pytest.approx(1 / 9)
    assert torch.equal(fn.box_blur(maps, 1), maps) and torch.equal(fn.box_blur(maps, 0), maps)


def test_undefined_values_are_nan():
    maps = torch.rand(2, 16, 16)
    empty = torch.zeros(2, 16, 16, dtype=torch.bool)
    some = empty.clone()
    some[:, 2:5, 2:5] = True
    assert all(torch.isnan(v).all() for v in fn.afl(maps, empty, empty))
    assert all(torch.isnan(v).all() for v in fn.mafl(maps, empty, empty))
    assert torch.isnan(fn.afl(torch.ones(2, 16, 16), some, some)[0]).all()  # constant map: 0/0
    # IOU: no objects at all, then a secondary object but no primary one
    objects, roles = fn.stack_objects({"x": some}, [[], []], [[], []])
    assert all(torch.isnan(v).all() for v in fn.iou(maps, objects, roles))
    objects, roles = fn.stack_objects({"x": some}, [[], []], [["x"], ["x"]])
    piou, siou = fn.iou(maps, objects, roles)
    assert torch.isnan(piou).all() and torch.isnan(siou).all()  # top-K with K = 0 is undefined
    piou, siou = fn.iou(maps, objects, roles, threshold="histogram")
    assert torch.isnan(piou).all() and not torch.isnan(siou).any()  # the original's top bin


def test_stack_objects_and_role_masks():
    masks = {
        "box1": _box(slice(0, 2), slice(0, 2), 4).repeat(2, 1, 1),
        "text": _box(slice(3, 4), slice(3, 4), 4),
    }
    masks["text"] = masks["text"].repeat(2, 1, 1)
    objects, roles = fn.stack_objects(masks, [["box1"], ["text"]], [["text"], []])
    assert objects.shape == (2, 2, 4, 4)
    assert roles.tolist() == [[fn.PRIMARY, fn.SECONDARY], [fn.IGNORED, fn.PRIMARY]]
    primary, secondary = fn.role_masks(objects, roles)
    assert primary.flatten(1).sum(1).tolist() == [4, 1] and secondary.flatten(1).sum(1).tolist() == [1, 0]
    with pytest.raises(ValueError, match="disjoint"):
        fn.stack_objects(masks, [["box1"], []], [["box1"], []])
    with pytest.raises(ValueError, match="disjoint"):
        fn.stack_objects(masks, [["box2"], []], [[], []])


def _normalised(m: np.ndarray, blur: int) -> np.ndarray:
    pad = blur // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(m, pad, mode="reflect"), (blur, blur))
    p = windows.mean(axis=(2, 3))
    p = (p - p.min()) / (p.max() - p.min())
    return p / p.sum()


def _random_case(rng: np.random.Generator, n: int = 30, size: int = 20):
    maps = rng.random((n, size, size)) ** 3
    objects = np.zeros((n, 3, size, size), dtype=bool)
    for i in range(n):
        for k, (r, c) in enumerate([(0, 0), (0, 11), (11, 5)]):  # disjoint 8×8 slots, random boxes inside
            h, w = rng.integers(1, 9, size=2)
            objects[i, k, r : r + h, c : c + w] = True
    roles = rng.integers(0, 3, size=(n, 3))
    roles[0] = [fn.PRIMARY, fn.SECONDARY, fn.SECONDARY]
    return maps, objects, roles


def test_afl_and_mafl_match_a_per_sample_numpy_reference():
    maps, objects, roles = _random_case(np.random.default_rng(0))
    expected = []
    for m, objs, r in zip(maps, objects, roles, strict=True):
        p = _normalised(m, 7)
        for role in (fn.PRIMARY, fn.SECONDARY):
            mask = objs[r == role].any(0)
            expected.append((p[mask].sum(), p[mask].mean()) if mask.any() else (NAN, NAN))
    primary, secondary = fn.role_masks(torch.from_numpy(objects), torch.from_numpy(roles))
    got_afl = torch.stack(fn.afl(torch.from_numpy(maps).float(), primary, secondary), 1).flatten()
    got_mafl = torch.stack(fn.mafl(torch.from_numpy(maps).float(), primary, secondary), 1).flatten()
    np.testing.assert_allclose(got_afl.numpy(), [e[0] for e in expected], rtol=1e-6)
    np.testing.assert_allclose(got_mafl.numpy(), [e[1] for e in expected], rtol=1e-6)


def _reference_iou(maps, objects, roles, threshold: str):
    out = []
    for m, objs, r in zip(maps, objects, roles, strict=True):
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(m, 3, mode="reflect"), (7, 7))
        p = windows.mean(axis=(2, 3))
        k = int(objs[r == fn.PRIMARY].any(0).sum())
        if threshold == "topk":
            chosen = np.zeros(p.size, dtype=bool)
            chosen[np.argsort(-p.ravel(), kind="stable")[:k]] = True
            chosen = chosen.reshape(p.shape)
        else:  # eval.get_plain_iou + get_thrs
            counts, edges = np.histogram(p.ravel())
            cumulative = np.cumsum(counts[::-1])[::-1]
            chosen = p >= edges[max(j for j in range(10) if cumulative[j] >= k)]
        for role in (fn.PRIMARY, fn.SECONDARY):
            ious = [(chosen & o).sum() / (chosen | o).sum() for o in objs[r == role]]
            out.append(np.mean(ious) if ious and (k > 0 or threshold == "histogram") else NAN)
    return out


@pytest.mark.parametrize("threshold", fn.THRESHOLDS)
def test_iou_matches_a_per_sample_numpy_reference(threshold):
    maps, objects, roles = _random_case(np.random.default_rng(1))
    piou, siou = fn.iou(
        torch.from_numpy(maps), torch.from_numpy(objects), torch.from_numpy(roles), threshold=threshold
    )
    got = torch.stack([piou, siou], 1).flatten().numpy()
    np.testing.assert_allclose(got, _reference_iou(maps, objects, roles, threshold), rtol=1e-12)


def test_bad_iou_options_raise():
    with pytest.raises(ValueError, match="threshold"):
        fn.iou(MAP, OBJECTS, ROLES, threshold="otsu")


# ------------------------------------------------------------------------------------------ aggregation

# (setting, bucket, PAFL, SAFL) per image; NaN = undefined for that image
ROWS = [
    ("simple_fr", 7, 0.8, NAN),  # Box1 only: no secondary object
    ("simple_fr", 7, 0.6, NAN),
    ("simple_fr", 8, 0.4, 0.3),  # Box1 + A
    ("simple_fr", 8, 0.6, 0.5),
    ("simple_fr", 8, NAN, 0.4),
    ("simple_nr", 2, 0.9, NAN),  # A only
    ("simple_nr", 11, 0.6, 0.2),  # all three objects
    ("complex_cr1", 5, 0.1, 0.5),  # Box2 + A
    ("complex_cr1", 5, 0.3, 0.7),
    ("complex_cr1", 12, 0.45, 0.3),
    ("complex_cr2", 8, 0.1, 0.7),
    ("complex_fr", 1, NAN, NAN),  # no object: nothing defined
]
SETTINGS, BUCKETS, PAFL, SAFL = (list(c) for c in zip(*ROWS, strict=True))
P_TABLE = fn.bucket_table(PAFL, BUCKETS, SETTINGS)
S_TABLE = fn.bucket_table(SAFL, BUCKETS, SETTINGS)


def test_bucket_table():
    assert list(P_TABLE)[:3] == [("complex_cr1", 5), ("complex_cr1", 12), ("complex_cr2", 8)]
    row = P_TABLE["simple_fr", 8]
    assert (row["mean"], row["std"], row["n"], row["skipped"]) == pytest.approx((0.5, 0.1, 2, 1))
    assert P_TABLE["simple_fr", 7]["mean"] == pytest.approx(0.7) and P_TABLE["simple_fr", 7][
        "std"
    ] == pytest.approx(0.1)
    assert math.isnan(P_TABLE["complex_fr", 1]["mean"]) and P_TABLE["complex_fr", 1]["skipped"] == 1
    assert S_TABLE["complex_cr1", 5]["mean"] == pytest.approx(0.6)
    assert fn.bucket_table([0.2, 0.4], [3, 3], "simple_fr") == {
        ("simple_fr", 3): pytest.approx({"mean": 0.3, "std": 0.1, "n": 2, "skipped": 0})
    }


def test_per_setting_and_simple_vs_complex():
    settings = fn.per_setting(P_TABLE)
    assert settings["simple_fr"] == pytest.approx({"mean": 0.6, "std": 0.1, "min": 0.5, "buckets": 2})
    assert settings["simple_nr"] == pytest.approx({"mean": 0.75, "std": 0.15, "min": 0.6, "buckets": 2})
    assert settings["complex_fr"]["buckets"] == 0 and math.isnan(settings["complex_fr"]["mean"])
    groups = fn.simple_vs_complex(P_TABLE)
    assert (groups["simple"]["mean"], groups["simple"]["min"], groups["simple"]["buckets"]) == pytest.approx(
        (0.675, 0.5, 4)
    )
    assert (
        groups["complex"]["mean"],
        groups["complex"]["min"],
        groups["complex"]["buckets"],
    ) == pytest.approx((0.25, 0.1, 3))


Z2 = 1.959963984540054**2  # the normal 97.5 % quantile, squared


def test_success_fraction_and_wrong_focus_with_wilson_intervals():
    # Wilson at 0/n: [0, z²/(n + z²)]; at n/n: [n/(n + z²), 1]; at 1/2: centre 1/2, half-width
    # z/(1 + z²/2)·sqrt(1/8 + z²/16)
    success = fn.success_fraction(P_TABLE, S_TABLE)
    assert success["simple_fr"] == pytest.approx(  # 0.5 is not > 0.5
        {"fraction": 0.0, "low": 0.0, "high": Z2 / (1 + Z2), "successes": 0, "buckets": 1}
    )
    assert success["simple_nr"] == pytest.approx(
        {"fraction": 1.0, "low": 1 / (1 + Z2), "high": 1.0, "successes": 1, "buckets": 1}
    )
    assert success["complex_cr1"] == pytest.approx(
        {"fraction": 0.0, "low": 0.0, "high": Z2 / (2 + Z2), "successes": 0, "buckets": 2}
    )
    none = success["complex_fr"]
    assert none["buckets"] == 0 and all(math.isnan(none[k]) for k in ("fraction", "low", "high"))
    wrong = fn.wrong_focus(P_TABLE, S_TABLE)
    assert wrong["simple_fr"] == pytest.approx(
        {"failures": 0, "buckets": 1, "failed": False, "fraction": 0.0, "low": 0.0, "high": Z2 / (1 + Z2)}
    )
    half = math.sqrt(Z2) / (1 + Z2 / 2) * math.sqrt(1 / 8 + Z2 / 16)
    assert wrong["complex_cr1"] == pytest.approx(  # half is not more than half
        {"failures": 1, "buckets": 2, "failed": False, "fraction": 0.5, "low": 0.5 - half, "high": 0.5 + half}
    )
    assert wrong["complex_cr2"] == pytest.approx(
        {"failures": 1, "buckets": 1, "failed": True, "fraction": 1.0, "low": 1 / (1 + Z2), "high": 1.0}
    )
    assert wrong["complex_fr"]["buckets"] == 0 and math.isnan(wrong["complex_fr"]["fraction"])


def test_bucket_statistics_at_the_full_index_are_the_point_estimates():
    values = np.array([0.8, 0.6, 0.2, 0.4, 0.9])
    labels = fn.bucket_labels(np.array([7, 7, 10, 10, 7]), ["simple_fr"] * 4 + ["simple_nr"])
    assert labels.tolist() == ["simple_fr/b7"] * 2 + ["simple_fr/b10"] * 2 + ["simple_nr/b7"]
    everything = np.arange(5)
    assert fn.over_buckets(values, labels, np.mean)(everything) == pytest.approx((0.7 + 0.3 + 0.9) / 3)
    assert fn.over_buckets(values, labels, np.min)(everything) == pytest.approx(0.3)
    assert fn.over_buckets(values, labels, np.min)(np.array([0, 0, 4])) == pytest.approx(0.8)  # b10 unseen


def test_bucket_interval_resamples_images_within_buckets():
    # bucket A [0.2, 0.2] always has mean 0.2; B [0.6, 1.0] has resampled means 0.6, 0.8, 1.0 with
    # probabilities 1/4, 1/2, 1/4: the mean over buckets is 0.4, 0.5 or 0.6, each end with probability
    # 1/4, so its 95 % interval is exactly [0.4, 0.6]; the minimum over buckets is always A's 0.2. Pooling
    # the four images instead gives resampled means from 0.2 to 1.0 (e.g. 0.2 with probability 1/16).
    values = np.array([0.2, 0.2, 0.6, 1.0, NAN])  # the NaN (undefined) sample is left out
    labels = fn.bucket_labels(np.array([1, 1, 2, 2, 2]), "simple_fr")
    mean = fn.bucket_interval(values, labels, np.mean, np.random.default_rng(0))
    assert (mean.kind, mean.low, mean.high) == (
        "stratified_bootstrap_ci95",
        pytest.approx(0.4),
        pytest.approx(0.6),
    )
    low = fn.bucket_interval(values, labels, np.min, np.random.default_rng(0))
    assert (low.low, low.high) == pytest.approx((0.2, 0.2))
    # the minimum's interval: A [0.1, 0.5] resamples to 0.1, 0.3, 0.5 (1/4, 1/2, 1/4), B stays 0.4, so the
    # minimum is 0.1, 0.3 or 0.4: the interval [0.1, 0.4] around the point estimate 0.3
    values = np.array([0.1, 0.5, 0.4, 0.4])
    low = fn.bucket_interval(values, fn.bucket_labels(np.array([1, 1, 2, 2]), "simple_fr"), np.min,
                             np.random.default_rng(1))  # fmt: skip
    assert (low.low, low.high) == pytest.approx((0.1, 0.4))
    nothing = fn.bucket_interval(np.array([NAN]), labels[:1], np.mean, np.random.default_rng(0))
    assert math.isnan(nothing.low) and math.isnan(nothing.high)


def test_constant_maps_and_the_reasons_for_undefined_scores():
    maps = torch.zeros(4, 3, 3)
    maps[1] = 0.7  # constant but not zero
    maps[2, 0, 0] = 1.0  # not constant
    maps[3, 2, 2] = -1e-9
    assert fn.constant(maps).tolist() == [True, True, False, False]
    values = np.array([NAN, NAN, NAN, 0.5, NAN])
    has_primary = np.array([True, False, True, True, False])
    is_constant = np.array([True, True, True, False, False])
    assert fn.undefined_reasons(values, has_primary, is_constant, "pafl") == {
        "no primary object (pafl undefined)": 2,  # samples 1 and 4, constant or not
        "constant map (pafl undefined)": 2,  # samples 0 and 2
    }
    assert fn.undefined_reasons(np.array([0.1]), np.array([True]), np.array([True]), "pafl") == {}


def test_saturation_groups_buckets_by_object_count():
    simple = {k: v for k, v in P_TABLE.items() if k[0] in fn.SIMPLE}
    by_count = fn.saturation(simple)
    assert list(by_count) == [1, 2, 3]
    assert [by_count[n]["mean"] for n in (1, 2, 3)] == pytest.approx([0.8, 0.5, 0.6])
    everything = fn.saturation(P_TABLE)
    assert everything[0]["buckets"] == 0 and everything[2]["mean"] == pytest.approx((0.5 + 0.2 + 0.1) / 3)
