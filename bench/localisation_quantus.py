"""Localisation metrics: attribench's pure functions (`attribench_core.builtin.localisation`; relevance mass
also as SMERF's AFL without blur or min-max, `attribench_smerf.functional.afl(blur=0, minmax=False)`)
against Quantus `RelevanceMassAccuracy`, `RelevanceRankAccuracy` and `PointingGame` on the same arrays,
side by side.

Data: N non-negative 64×64 maps (smooth blobs plus noise) with 1–3 rectangles as the ground-truth mask each;
`--empty` of the masks are empty. Two kinds of map: "float" (float32, no ties) and "uint8" (the same maps
quantised to 256 levels, as SoCo stores them: ties). Quantus runs with its defaults (abs off,
`normalise_by_max` on, which divides by one positive number and changes none of these scores), `batch_size`
= N (its fastest).
Ours takes the same numpy arrays (`torch.from_numpy`, no copy; the conversion is timed).

Values: max |ours − Quantus| over the samples where both are finite, and where they differ, why (tested
here, not assumed): Quantus's rank accuracy sorts with `np.argsort` (not stable), ours with a stable sort
(ties in row-major order); its pointing game counts a hit if any pixel tied at the maximum is in the mask,
ours takes the first maximum; its pointing game returns a boolean array, so NaN (empty mask) becomes True.

Run: OMP_NUM_THREADS=1 python bench/localisation_quantus.py [--maps 10000] [--repeats 3] [--threads 1]
(needs `pip install -r bench/requirements.txt`).
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np
import quantus
import torch
from attribench_smerf.functional import afl
from soco_imputation import attribution_maps
from timing import interleaved, machine

from attribench_core.builtin import localisation


def make_maps(count: int, side: int, empty: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(maps `[N,side,side]` float32 ≥ 0, masks `[N,side,side]` bool)."""
    generator = torch.Generator().manual_seed(seed)
    maps = attribution_maps(count, side, generator, blobs=3)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    masks = torch.zeros(count, side, side, dtype=torch.bool)
    boxes = torch.randint(1, 4, (count,), generator=generator)
    for k in range(3):
        corner = torch.randint(0, side - 8, (count, 2), generator=generator)
        size = torch.randint(4, side // 3, (count, 2), generator=generator)
        inside = (
            (yy >= corner[:, :1, None])
            & (yy < corner[:, :1, None] + size[:, :1, None])
            & (xx >= corner[:, 1:, None])
            & (xx < corner[:, 1:, None] + size[:, 1:, None])
        )
        masks |= inside & (boxes > k)[:, None, None]
    masks[torch.rand(count, generator=generator) < empty] = False
    return maps.numpy(), masks.numpy()


def quantise(maps: np.ndarray) -> np.ndarray:
    """Each map min-max scaled to 0…255 and rounded (float32 values with ties)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return np.round(255 * (maps - low) / (high - low)).astype(np.float32)


def ours(name: str, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    m, s = torch.from_numpy(maps), torch.from_numpy(masks)
    if name == "relevance mass":
        return localisation.relevance_mass(m, s).numpy()
    if name == "relevance rank":
        return localisation.relevance_rank(m, s).numpy()
    return localisation.pointing_game(m, s).numpy()


QUANTUS = {
    "relevance mass": quantus.RelevanceMassAccuracy,
    "relevance rank": quantus.RelevanceRankAccuracy,
    "pointing game": quantus.PointingGame,
}


def theirs(name: str, maps: np.ndarray, masks: np.ndarray, dummy: np.ndarray) -> np.ndarray:
    metric = QUANTUS[name](disable_warnings=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = metric(
            model=None,
            x_batch=dummy,
            y_batch=np.zeros(len(maps), dtype=np.int64),
            a_batch=maps[:, None],
            s_batch=masks[:, None],
            batch_size=len(maps),
        )
    return np.asarray(out, dtype=np.float64)


def theirs_core(name: str, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Only the metric's own arithmetic: `evaluate_batch` on the arrays, without `__call__`'s checks."""
    metric = QUANTUS[name](disable_warnings=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(metric.evaluate_batch(a_batch=maps[:, None], s_batch=masks[:, None]), np.float64)


def explain(name: str, maps: np.ndarray, masks: np.ndarray, mine: np.ndarray, reference: np.ndarray) -> str:
    """Where the two differ, test the reason."""
    empty = ~masks.reshape(len(masks), -1).any(1)
    finite = np.isfinite(mine) & np.isfinite(reference)
    differs = finite & (np.abs(mine - reference) > 1e-5)
    notes = []
    nan_pattern = np.isnan(mine) != np.isnan(reference)
    if nan_pattern.any():
        notes.append(
            f"NaN on one side only for {int(nan_pattern.sum())} samples"
            f" ({int((nan_pattern & empty).sum())} of them with an empty mask;"
            f" Quantus there: {sorted(set(reference[nan_pattern & empty].tolist()))[:3]},"
            f" ours: {sorted(set(mine[nan_pattern & empty].tolist()), key=str)[:3]})"
        )
    if not differs.any():
        return "; ".join(notes)
    flat, flat_masks = maps.reshape(len(maps), -1), masks.reshape(len(masks), -1)
    if name == "relevance rank":
        area = flat_masks.sum(1)
        ordered = -np.sort(-flat, axis=1)
        k = np.clip(area, 1, flat.shape[1] - 1)
        tie = ordered[np.arange(len(flat)), k - 1] == ordered[np.arange(len(flat)), k]
        stable = np.argsort(-flat, axis=1, kind="stable")
        chosen = np.take_along_axis(flat_masks, stable, axis=1)
        top = np.arange(flat.shape[1])[None] < area[:, None]
        with np.errstate(all="ignore"):
            quantus_stable = (chosen & top).sum(1) / area
        same = np.allclose(quantus_stable[finite], mine[finite], atol=1e-6)
        notes.append(
            f"{int(differs.sum())} samples differ, all with a tie across the K-th value: "
            f"{bool(tie[differs].all())}; Quantus's formula with a stable argsort equals ours: {same}"
        )
    elif name == "pointing game":
        tied = (flat == flat.max(1, keepdims=True)).sum(1) > 1
        notes.append(
            f"{int(differs.sum())} samples differ, all with several pixels tied at the maximum:"
            f" {bool(tied[differs].all())} (Quantus hit where ours missed:"
            f" {int((reference > mine)[differs].sum())})"
        )
    else:
        notes.append(f"{int(differs.sum())} samples differ by more than 1e-5")
    return "; ".join(notes)


def ratio(value: float) -> str:
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--empty", type=float, default=0.01, help="fraction of empty masks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    maps, masks = make_maps(args.maps, args.side, args.empty)
    dummy = np.zeros((args.maps, 1, args.side, args.side), dtype=np.float32)
    print(
        f"machine: {machine()}; torch {torch.__version__} ({args.threads} threads), Quantus"
        f" {quantus.__version__}, numpy {np.__version__},"
        f" OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')};"
        f" load average at the start {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{args.maps} maps {args.side}×{args.side}, {int((~masks.any(axis=(1, 2))).sum())} empty masks;"
        f" median of {args.repeats} interleaved repeats\n"
    )
    smerf = afl(
        torch.from_numpy(maps), torch.from_numpy(masks), torch.from_numpy(masks), blur=0, minmax=False
    )[0]
    core = ours("relevance mass", maps, masks)
    nonempty = masks.any(axis=(1, 2))
    print(
        "- relevance mass = SMERF AFL without blur or min-max (non-empty masks): max |difference|"
        f" {np.abs(smerf.numpy()[nonempty] - core[nonempty]).max():.1e}\n"
    )
    header = [
        "maps",
        "metric",
        "Quantus ms",
        "Quantus `evaluate_batch` ms",
        "ours ms",
        "Quantus/ours",
        "`evaluate_batch`/ours",
        "max abs diff (both finite)",
        "why",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    out: dict[str, np.ndarray] = {}
    for kind, values in (("float", maps), ("uint8 levels", quantise(maps))):
        for name in QUANTUS:
            out.clear()
            times = interleaved(
                {
                    "quantus": lambda n=name, v=values: out.__setitem__(
                        "quantus", theirs(n, v, masks, dummy)
                    ),
                    "core": lambda n=name, v=values: out.__setitem__("core", theirs_core(n, v, masks)),
                    "ours": lambda n=name, v=values: out.__setitem__("ours", ours(n, v, masks)),
                },
                repeats=args.repeats,
            )
            mine, reference = out["ours"].astype(np.float64), out["quantus"]
            assert np.allclose(reference, out["core"], atol=1e-6, equal_nan=True)  # same values
            finite = np.isfinite(mine) & np.isfinite(reference)
            difference = np.abs(mine - reference)[finite].max()
            print(
                f"| {kind} | {name} | {times['quantus'] * 1e3:.0f} | {times['core'] * 1e3:.0f}"
                f" | {times['ours'] * 1e3:.1f} | {ratio(times['quantus'] / times['ours'])}"
                f" | {ratio(times['core'] / times['ours'])} | {difference:.1e}"
                f" | {explain(name, values, masks, mine, reference)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
