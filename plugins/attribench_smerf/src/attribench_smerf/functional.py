"""SMERF's metrics as pure functions, and the paper's aggregations of their per-image results.

Metrics (Kim, Plumb, Talwalkar 2022, §4 and App. A.4; wnstlr/SMERF `smerf/eval.py`) take 2-D maps
`[B,H,W]` (see `postprocess`) and boolean masks `[B,H,W]`, or per-object masks `[B,K,H,W]` with a role per
object (`PRIMARY`, `SECONDARY`, `IGNORED`), and return one value per sample, NaN where undefined (an empty
object list, or a constant map). They compute in float64, as the original's numpy pipeline did.

Objects are assumed not to overlap (TextBox's generator guarantees it): masks are unions, whereas the
original summed over its per-object rectangles (which double-counts overlaps).

Aggregations take per-image values (NaN = undefined, skipped and counted) with their setting and paper
bucket id (1–12) and return plain dicts. Uncertainty: the statistics over buckets (their mean, the paper's
headline, and their minimum, its key finding) get a bootstrap that resamples images within each bucket
(`bucket_interval`); rates over buckets (success, wrong focus) get Wilson's interval, with the buckets as
the trials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from attribench_core import Uncertainty, bootstrap_interval, wilson_ci
from attribench_smerf.settings import COMPLEX, SIMPLE, bucket_objects

IGNORED, PRIMARY, SECONDARY = 0, 1, 2
THRESHOLDS = ("topk", "histogram")
K_FROM = ("primary", "own")
NAN = float("nan")

BucketTable = dict[tuple[str, int], dict[str, float]]  # per (setting, bucket): mean, std, n, skipped


# ---------------------------------------------------------------------------------------------- metrics


def box_blur(maps: torch.Tensor, size: int = 7) -> torch.Tensor:
    """`cv2.blur(map, (size, size))` per sample: the mean over a size×size window, borders mirrored
    without repeating the edge pixel (OpenCV's default BORDER_REFLECT_101, torch's "reflect");
    `size` 0 or 1 means no blur. An even size anchors the window like OpenCV (size // 2 before). Needs
    H, W > size // 2 (SMERF: 64×64 maps, size 7)."""
    if size <= 1:
        return maps
    before, after = size // 2, size - 1 - size // 2
    padded = F.pad(maps[:, None], (before, after, before, after), mode="reflect")
    return F.avg_pool2d(padded, size, stride=1)[:, 0]


def normalise(maps: torch.Tensor, *, blur: int = 7, minmax: bool = True) -> torch.Tensor:
    """The map SMERF's AFL and MAFL read: blurred, min-max scaled to [0,1] per sample, then divided by its
    sum (`get_afl`). A constant map gives NaN (0/0, as in the original). `minmax=False` skips the min-max
    step, which is what the paper's Fig. 14 computes (for non-negative maps)."""
    p = box_blur(maps.to(torch.float64), blur)
    if minmax:
        low, high = p.amin(dim=(1, 2), keepdim=True), p.amax(dim=(1, 2), keepdim=True)
        p = (p - low) / (high - low)
    total = p.sum(dim=(1, 2), keepdim=True)
    return torch.where(total != 0, p / total, torch.full_like(p, NAN))


def constant(maps: torch.Tensor) -> torch.Tensor:
    """`[B]` bool: maps whose pixels are all equal (e.g. all zero). AFL and MAFL are undefined on them (the
    min-max step divides 0 by 0); the metrics skip them as "constant map"."""
    flat = maps.flatten(1)
    return (flat == flat[:, :1]).all(1)


def undefined_reasons(
    values: np.ndarray, has_primary: np.ndarray, is_constant: np.ndarray, name: str
) -> dict[str, int]:
    """Why the NaN `values` are undefined, counted: the sample has no primary object (no method can score
    it; this reason wins), or its map is constant. `has_primary` and `is_constant` are `[N]` bool."""
    undefined = np.isnan(values)
    counts = {
        f"no primary object ({name} undefined)": int((undefined & ~has_primary).sum()),
        f"constant map ({name} undefined)": int((undefined & has_primary & is_constant).sum()),
    }
    return {reason: count for reason, count in counts.items() if count}


def _where_any(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.flatten(1).any(1), values, torch.full_like(values, NAN))


def afl(
    maps: torch.Tensor, primary: torch.Tensor, secondary: torch.Tensor, *, blur: int = 7, minmax: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attribution Focus Level: (PAFL, SAFL) `[B]`, the share of the `normalise`d map inside the primary
    and the secondary mask. NaN where a mask is empty or the map is constant."""
    p = normalise(maps, blur=blur, minmax=minmax)
    return tuple(_where_any(m, (p * m).sum(dim=(1, 2))) for m in (primary, secondary))


def mafl(
    maps: torch.Tensor, primary: torch.Tensor, secondary: torch.Tensor, *, blur: int = 7, minmax: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean AFL: (PMAFL, SMAFL) `[B]`, the mean of the `normalise`d map over the mask's pixels (values of
    order 1/(H·W); only PMAFL vs SMAFL matters, App. B.4). NaN where a mask is empty."""
    p = normalise(maps, blur=blur, minmax=minmax)
    return tuple(
        _where_any(m, (p * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp(min=1)) for m in (primary, secondary)
    )


def stack_objects(
    masks: Mapping[str, torch.Tensor], primary: Sequence[Iterable[str]], secondary: Sequence[Iterable[str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Named masks `{name: [B,H,W]}` and per-sample name lists -> (`objects` `[B,K,H,W]`, `roles` `[B,K]`),
    K in the order of `masks`; a name in neither list of a sample is `IGNORED` there."""
    names = list(masks)
    objects = torch.stack([masks[n].bool() for n in names], dim=1)
    roles = torch.full(objects.shape[:2], IGNORED, dtype=torch.long)
    for i, (prim, sec) in enumerate(zip(primary, secondary, strict=True)):
        prim, sec = set(prim), set(sec)
        if prim & sec or not prim | sec <= set(names):
            raise ValueError(
                f"Sample {i}: primary {sorted(prim)} and secondary {sorted(sec)} must be "
                f"disjoint names among {names}."
            )
        for k, n in enumerate(names):
            roles[i, k] = PRIMARY if n in prim else SECONDARY if n in sec else IGNORED
    return objects, roles.to(objects.device)


def role_masks(objects: torch.Tensor, roles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(primary, secondary) `[B,H,W]`: the union of the objects holding each role, for `afl` and `mafl`."""
    return tuple((objects & (roles == r)[:, :, None, None]).any(1) for r in (PRIMARY, SECONDARY))


def top_k(maps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """`[B,H,W]` bool: the `k[b]` highest pixels of each map; ties go to the earlier pixel (row-major)."""
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    )
    return (rank < k[:, None]).view_as(maps)


def histogram_threshold(maps: torch.Tensor, k: torch.Tensor, bins: int = 10) -> torch.Tensor:
    """`[B,H,W]` bool: the original's coarse top-K (`get_plain_iou` + `get_thrs`, research notes §3.5).

    `np.histogram(map, 10)`; walking down from the top bin, the first bin whose cumulative count reaches
    K gives the threshold (its lower edge) and the mask is map ≥ threshold, so at least K pixels and often
    many more. K = 0 keeps the top bin; a constant map gets numpy's ±0.5 range and is kept whole.
    """
    flat = maps.flatten(1).to(torch.float64)
    low, high = flat.amin(1), flat.amax(1)
    constant = low == high
    low, high = torch.where(constant, low - 0.5, low), torch.where(constant, high + 0.5, high)
    edges = torch.arange(bins, dtype=torch.float64, device=maps.device) * ((high - low) / bins)[:, None]
    edges = edges + low[:, None]  # np.linspace's lower edges: j·step + start
    at_least = (flat[:, None, :] >= edges[:, :, None]).sum(2)  # pixels in bins j..top, non-increasing in j
    chosen = (at_least >= k[:, None]).sum(1) - 1
    threshold = edges.gather(1, chosen[:, None])
    return (flat >= threshold).view_as(maps)


def _mean_iou(chosen: torch.Tensor, objects: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Mean over the `selected` objects `[B,K]` of |chosen ∩ object| / |chosen ∪ object|; NaN if none."""
    inter = (chosen[:, None] & objects).flatten(2).sum(2)
    union = (chosen[:, None] | objects).flatten(2).sum(2).clamp(min=1)
    ratio = inter.to(torch.float64) / union
    total = torch.where(selected, ratio, torch.zeros_like(ratio)).sum(1)
    count = selected.sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, NAN))


def iou(
    maps: torch.Tensor,
    objects: torch.Tensor,
    roles: torch.Tensor,
    *,
    blur: int = 7,
    threshold: str = "topk",
    k_from: str = "primary",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(PIOU, SIOU) `[B]`: blur the map, keep its top K pixels, take the IoU with each object and average
    over the primary (PIOU) and the secondary objects (SIOU).

    `objects` `[B,K,H,W]` bool, `roles` `[B,K]` (`PRIMARY`, `SECONDARY`, `IGNORED`; see `stack_objects`);
    an object with an empty mask counts as absent. K = the primary objects' area (union) for both values
    (`k_from="primary"`, the original's `plain_single`, the paper's figures) or, for SIOU, the secondary
    objects' area (`k_from="own"`, the original's `plain`). `threshold="topk"` keeps exactly K pixels
    (ties to the earlier pixel, row-major); `"histogram"` is the original's coarse threshold
    (`histogram_threshold`). NaN where the role has no object; with `topk`, SIOU is also NaN when its K is 0
    (no primary object), whereas `histogram` then keeps the top bin as the original did.
    """
    if threshold not in THRESHOLDS or k_from not in K_FROM:
        raise ValueError(f"threshold must be one of {THRESHOLDS} and k_from one of {K_FROM}.")
    select = top_k if threshold == "topk" else histogram_threshold
    p = box_blur(maps.to(torch.float64), blur)
    k_primary, k_own = (m.flatten(1).sum(1) for m in role_masks(objects, roles))
    chosen = select(p, k_primary)
    k_secondary = k_own if k_from == "own" else k_primary
    chosen_secondary = select(p, k_own) if k_from == "own" else chosen
    present = objects.flatten(2).any(2)
    result = []
    for role, k, picked in ((PRIMARY, k_primary, chosen), (SECONDARY, k_secondary, chosen_secondary)):
        value = _mean_iou(picked, objects, present & (roles == role))
        result.append(
            value if threshold == "histogram" else torch.where(k > 0, value, torch.full_like(value, NAN))
        )
    return tuple(result)


# ------------------------------------------------------------------------------------------ aggregation

CORRECTNESS_THRESHOLD = 0.5


def bucket_table(
    values: Sequence[float] | np.ndarray, buckets: Sequence[int] | np.ndarray, settings: str | Sequence[str]
) -> BucketTable:
    """Per (setting, bucket): mean and std (ddof 0, as the original) of the per-image values, `n` valid
    images and `skipped` NaN ones; mean and std are NaN when no image is valid. Keys are sorted."""
    values = np.asarray(values, dtype=np.float64)
    buckets = np.asarray(buckets, dtype=np.int64)
    settings = np.broadcast_to(np.asarray(settings, dtype=object), values.shape)
    table = {}
    for key in sorted(set(zip(settings.tolist(), buckets.tolist(), strict=True))):
        v = values[(settings == key[0]) & (buckets == key[1])]
        ok = v[~np.isnan(v)]
        mean, std = (float(ok.mean()), float(ok.std())) if ok.size else (NAN, NAN)
        table[key] = {"mean": mean, "std": std, "n": int(ok.size), "skipped": int(v.size - ok.size)}
    return table


def over_buckets(
    values: np.ndarray, labels: np.ndarray, reduce: Callable[[np.ndarray], float]
) -> Callable[[np.ndarray], float]:
    """The statistic `reduce` (`np.mean`: the headline; `np.min`: the worst bucket) of the bucket means of
    `values[index]`, as a function of `index` for `bootstrap_interval`; `labels` names each value's
    (setting, bucket) (`bucket_labels`). `index = arange(N)` gives the point estimate. Values must be
    defined (no NaN); buckets that `index` does not reach are left out."""
    names, codes = np.unique(np.asarray(labels), return_inverse=True)
    codes, values = codes.ravel(), np.asarray(values, dtype=np.float64)

    def statistic(index: np.ndarray) -> float:
        sums = np.bincount(codes[index], weights=values[index], minlength=len(names))
        counts = np.bincount(codes[index], minlength=len(names))
        return float(reduce(sums[counts > 0] / counts[counts > 0]))

    return statistic


def bucket_labels(buckets: np.ndarray, settings: str | Sequence[str]) -> np.ndarray:
    """One label per sample naming its (setting, bucket), e.g. `simple_fr/b7`, for `bucket_interval`."""
    settings = np.broadcast_to(np.asarray(settings, dtype=object), np.shape(buckets))
    return np.array([f"{s}/b{int(b)}" for s, b in zip(settings.tolist(), np.ravel(buckets), strict=True)])


def bucket_interval(
    values: np.ndarray,
    labels: np.ndarray,
    reduce: Callable[[np.ndarray], float],
    rng: np.random.Generator,
) -> Uncertainty:
    """95 % interval of `reduce` over bucket means by the stratified bootstrap: each resample draws, within
    every bucket, as many images as it holds (with replacement), so every bucket keeps its weight and only
    the image noise of its mean varies. NaN values (undefined samples) are left out first, as in
    `bucket_table`. The minimum of noisy means is biased low, and its percentile interval inherits that
    bias (it sits mostly below the point estimate and can exclude it); its upper end is the informative
    one."""
    values, labels = np.asarray(values, dtype=np.float64), np.asarray(labels)
    ok = ~np.isnan(values)
    if not ok.any():
        return Uncertainty("stratified_bootstrap_ci95", NAN, NAN)
    return bootstrap_interval(over_buckets(values[ok], labels[ok], reduce), labels[ok], rng)


def _summary(means: list[float]) -> dict[str, float]:
    """Mean, std, min and count of bucket means (NaN buckets dropped)."""
    m = np.array([x for x in means if not np.isnan(x)], dtype=np.float64)
    if not m.size:
        return {"mean": NAN, "std": NAN, "min": NAN, "buckets": 0}
    return {"mean": float(m.mean()), "std": float(m.std()), "min": float(m.min()), "buckets": int(m.size)}


def _settings(table: Mapping[tuple[str, int], object]) -> list[str]:
    return sorted({s for s, _ in table})


def per_setting(table: Mapping[tuple[str, int], Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per setting: mean, std (across buckets, the paper's error bars), min and count of bucket means."""
    return {s: _summary([v["mean"] for (t, _), v in table.items() if t == s]) for s in _settings(table)}


def simple_vs_complex(
    table: Mapping[tuple[str, int], Mapping[str, float]],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """The paper's headline (Fig. 2, 8b): bucket means pooled over the simple settings and over the complex
    ones; their unweighted mean and their **min** (plus std and count)."""
    groups = groups if groups is not None else {"simple": SIMPLE, "complex": COMPLEX}
    return {
        g: _summary([v["mean"] for (s, _), v in table.items() if s in members])
        for g, members in groups.items()
    }


def rate(successes: int, trials: int) -> dict[str, float]:
    """A share with Wilson's 95 % interval (`low`, `high`); all NaN without trials."""
    interval = wilson_ci(successes, trials)
    return {"fraction": successes / trials if trials else NAN, "low": interval.low, "high": interval.high}


def _paired(pafl: Mapping, safl: Mapping, setting: str) -> list[tuple[float, float]]:
    """(PAFL, SAFL) bucket means of a setting's buckets where both are defined."""
    return [
        (v["mean"], safl[key]["mean"])
        for key, v in pafl.items()
        if key[0] == setting and key in safl and not np.isnan(v["mean"]) and not np.isnan(safl[key]["mean"])
    ]


def success_fraction(
    pafl: Mapping[tuple[str, int], Mapping[str, float]],
    safl: Mapping[tuple[str, int], Mapping[str, float]],
    threshold: float = CORRECTNESS_THRESHOLD,
) -> dict[str, dict[str, float]]:
    """Fig. 7 top, per setting: among buckets with both a relevant and an irrelevant object (PAFL and SAFL
    both defined), the share where mean PAFL > `threshold` with Wilson's interval over those buckets
    (`low`, `high`); all three NaN when there is none."""
    out = {}
    for s in _settings(pafl):
        pairs = _paired(pafl, safl, s)
        wins = sum(p > threshold for p, _ in pairs)
        out[s] = {**rate(wins, len(pairs)), "successes": wins, "buckets": len(pairs)}
    return out


def wrong_focus(
    pafl: Mapping[tuple[str, int], Mapping[str, float]], safl: Mapping[tuple[str, int], Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Fig. 7 bottom, per setting: `failures` = buckets (with both values defined) where mean SAFL > mean
    PAFL; `failed` when that is more than half of them; `fraction` (= failures / buckets) with Wilson's
    interval (`low`, `high`)."""
    out = {}
    for s in _settings(pafl):
        pairs = _paired(pafl, safl, s)
        bad = sum(q > p for p, q in pairs)
        failed = bool(pairs) and bad > len(pairs) / 2
        out[s] = {"failures": bad, "buckets": len(pairs), "failed": failed, **rate(bad, len(pairs))}
    return out


def saturation(table: Mapping[tuple[str, int], Mapping[str, float]]) -> dict[int, dict[str, float]]:
    """Fig. 6b: bucket means grouped by the number of objects the bucket's images contain; filter the
    table to the settings of interest first (the paper: the simple ones)."""
    count = {b: len(bucket_objects(b).present) for _, b in table}
    return {
        n: _summary([v["mean"] for (_, b), v in table.items() if count[b] == n])
        for n in sorted(set(count.values()))
    }
