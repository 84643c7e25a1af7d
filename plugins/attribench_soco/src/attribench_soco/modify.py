"""SoCo's Remove/Introduce modifications of saliency maps (paper Table 3, Appendix G.3).

They change attribution *values* while barely changing the features' *order*: Remove takes attribution away
(lowers completeness, should keep soundness), Introduce plants attribution on unimportant features (hurts
soundness, raises completeness). A value-based metric should tell the modified maps from the original; an
order-based one (ROAD, Deletion) barely can (paper §5.2, Table 1).

Maps are float, non-negative and in [0,1] (e.g. from `attribench_soco.maps.saliency`), shaped `[N, ...]`:
every non-batch dimension is a feature (`[N,H,W]` images, `[N,D]` vectors). Results are clipped to [0,1].

Unlike the original scripts, which modified uint8 PNG maps (0.6 meant 153, random shifts were integers
0…152, partial-remove wrote the map's minimum), values stay continuous and removed ones are 0; a partial
quantile of 1 is just the maximum (the original special-cased it and decremented the max pixels by 1 in the
array it sorted, not in its output).
"""

from __future__ import annotations

import torch

from .functional import ascending_order

MODES = ("remove", "introduce")
SCHEMES = ("constant", "random", "partial")


def modify(
    maps: torch.Tensor,
    mode: str,
    scheme: str,
    generator: torch.Generator | None = None,
    *,
    scale: float = 0.6,
    remove_ranks: tuple[float, float] = (0.6, 0.8),
    introduce_ranks: tuple[float, float] = (0.0, 0.4),
    quantile: float = 0.8,
) -> torch.Tensor:
    """Remove or introduce attribution in `maps` `[N, ...]` with one of SoCo's schemes, clipped to [0,1].

    - constant: subtract (remove) or add (introduce) `scale` to every feature.
    - random: subtract or add a shift drawn from U(0, `scale`) independently for every feature.
    - partial: rank each map's features by ascending value (ties in random order); remove sets the
      features at ranks [lo·F, hi·F) of `remove_ranks` to 0; introduce sets those at the ranks of
      `introduce_ranks` to the map's `quantile` (linear interpolation, as `torch.quantile`). F is the
      number of features; rank bounds are rounded to the nearest integer.

    Randomness (shifts, tie-breaking) is drawn from `generator`, a CPU generator (a fresh one seeded 0 when
    None, so direct calls are reproducible), and moved to the maps' device.
    """
    _check_choice("mode", mode, MODES)
    _check_choice("scheme", scheme, SCHEMES)
    if maps.dim() < 2:
        raise ValueError(
            f"modify expects maps [N, ...] with at least one feature dim; got {tuple(maps.shape)}."
        )
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    flat = maps.flatten(1)
    if scheme == "partial":
        ranks = remove_ranks if mode == "remove" else introduce_ranks
        out = _partial(flat, mode, ranks, quantile, generator)
    else:
        shift: torch.Tensor | float = scale
        if scheme == "random":
            draws = torch.rand(flat.shape, generator=generator, dtype=flat.dtype, device="cpu")
            shift = scale * draws.to(flat.device)
        out = flat - shift if mode == "remove" else flat + shift
    return out.clamp(0, 1).view_as(maps)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def _partial(
    flat: torch.Tensor,
    mode: str,
    ranks: tuple[float, float],
    quantile: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The partial scheme on `flat` `[N,F]`: overwrite the features at the given ascending-rank fractions."""
    low, high = ranks
    if not 0 <= low <= high <= 1 or not 0 <= quantile <= 1:
        raise ValueError(
            f"Partial needs ranks 0 <= lo <= hi <= 1 and a quantile in [0,1]; got {ranks}, {quantile}."
        )
    features = flat.shape[1]
    order = ascending_order(flat, generator)
    chosen = order[:, round(low * features) : round(high * features)]
    if mode == "remove":
        value = torch.zeros_like(flat[:, :1])
    else:
        value = _sorted_quantile(flat.gather(1, order), quantile)
    return flat.scatter(1, chosen, value.expand_as(chosen))


def _sorted_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile `[N,1]` of rows already sorted ascending, interpolated linearly like `torch.quantile`
    (which would sort again and refuses inputs above 16M elements)."""
    position = q * (values.shape[1] - 1)
    below = int(position)
    above = min(below + 1, values.shape[1] - 1)
    weight = position - below
    return values[:, below : below + 1] + weight * (
        values[:, above : above + 1] - values[:, below : below + 1]
    )
