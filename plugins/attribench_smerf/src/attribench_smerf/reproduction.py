"""SMERF's headline study (Kim et al. 2022, Fig. 2): the 17 methods, the paper's PAFL figures, and the table
and qualitative findings that compare a run of `smerf.afl --setting all` with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# SMERF's 17 methods (research notes §4) as our explainers, with the paper's tick labels; SmoothGrad with
# SMERF's settings (64 samples, σ 0.1 absolute; our default is BAM's 25 samples, σ 0.15 of the range).
SMOOTHGRAD = "smoothgrad_sq:samples=64,sigma=0.1,sigma_mode=absolute"
# LRP-ε with SMERF's absolute ε = 1 (our default is relative to each layer's activations).
LRP_EPSILON = "lrp_epsilon:epsilon=1.0"  # as the runner labels it
METHODS = {
    "gradient": "Gradient",
    SMOOTHGRAD: "SmoothGrad",
    "deconvnet": "Deconvnet",
    "guided_backprop": "GBP",
    "deep_taylor": "DeepTaylor",
    "input_x_gradient": "I*G",
    "ig": "IG",
    "lrp_z": "LRP-z",
    LRP_EPSILON: "LRP-ε",
    "lrp_alpha1beta0_flat": "LRP-AFlat",
    "lrp_alpha2beta1_flat": "LRP-BFlat",
    "deeplift_rc": "DeepLIFT-RC",
    "deeplift": "DeepLIFT-R",
    "gradcam": "Grad-CAM",
    "deepshap": "DeepSHAP",
    "random": "Random",
    "edge": "Edge",
}

# The paper's main figure, PAFL (simple mean, simple min, complex mean, complex min) over buckets, read off
# the authors' notebook (±0.02; "DeepLIFT" there is RevealCancel). Random and Edge: about 0.02–0.07 simple.
PAPER_PAFL = {
    "gradient": (0.23, 0.14, 0.18, 0.01),
    SMOOTHGRAD: (0.50, 0.19, 0.34, 0.02),
    "deconvnet": (0.07, 0.03, 0.06, 0.00),
    "guided_backprop": (0.29, 0.21, 0.23, 0.01),
    "deep_taylor": (0.60, 0.39, 0.43, 0.08),
    "ig": (0.67, 0.46, 0.52, 0.06),
    LRP_EPSILON: (0.76, 0.41, 0.53, 0.08),
    "deeplift_rc": (0.69, 0.50, 0.51, 0.04),
    "gradcam": (0.35, 0.13, 0.07, 0.00),
    "deepshap": (0.52, 0.24, 0.24, 0.00),
}
BASELINES = ("random", "edge")


def _cell(
    mean: float | None, low: float | None, interval: tuple[float | None, float | None] = (None, None)
) -> str:
    """`mean (min)`, with the minimum's 95 % interval when there is one: `0.25 (0.03 [0.01, 0.04])`."""
    if mean is None or low is None:
        return "–"
    if None in interval:
        return f"{mean:.2f} ({low:.2f})"
    return f"{mean:.2f} ({low:.2f} [{interval[0]:.2f}, {interval[1]:.2f}])"


def pafl_by_method(results: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """`values` of each result of a `smerf.afl` run (its JSON `results`), by explainer as in `METHODS`
    (the label without its namespace: `ig`, `smoothgrad_sq:samples=64,...`)."""
    return {r["explainer"].split(".", 1)[-1]: r["values"] for r in results}


def _ours(values: Mapping[str, Any], group: str) -> str:
    """Our cell for `group` (simple, complex): mean (min [the minimum's stratified bootstrap interval])."""
    key = f"pafl_{group}_min"
    interval = (values.get(f"{key}_low"), values.get(f"{key}_high"))
    return _cell(values.get(f"pafl_{group}_mean"), values.get(key), interval)


def table(ours: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown rows: our mean (min [95 % interval]) PAFL over simple and over complex buckets, beside the
    paper's mean (min)."""
    lines = [
        "| method | ours: simple mean (min [95 %]) | paper | ours: complex mean (min [95 %]) | paper |",
        "|---|---|---|---|---|",
    ]
    for name, label in METHODS.items():
        v, paper = ours.get(name, {}), PAPER_PAFL.get(name, (None,) * 4)
        cells = [_ours(v, "simple"), _cell(*paper[:2]), _ours(v, "complex"), _cell(*paper[2:])]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def findings(ours: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """The paper's qualitative findings (Kim et al. 2022), each with whether our run shows it."""
    models = {n: v for n, v in ours.items() if n not in BASELINES}

    def value(name: str, key: str) -> float:
        got = ours.get(name, {}).get(key)
        return float("nan") if got is None else float(got)

    return [
        (
            "simple mean PAFL ≥ 0.5 for IG, LRP-ε and DeepLIFT (RevealCancel)",
            all(value(n, "pafl_simple_mean") >= 0.5 for n in ("ig", LRP_EPSILON, "deeplift_rc")),
        ),
        (
            "complex mean PAFL below the simple mean for every method",
            all(value(n, "pafl_complex_mean") < value(n, "pafl_simple_mean") for n in models),
        ),
        (
            "every method's minimum PAFL over complex buckets ≤ 0.1",
            all(value(n, "pafl_complex_min") <= 0.1 for n in ours),
        ),
        (
            "Random and Edge: simple mean PAFL ≤ 0.1",
            all(value(n, "pafl_simple_mean") <= 0.1 for n in BASELINES),
        ),
    ]


def report(results: list[Mapping[str, Any]]) -> str:
    """The table, then one line per finding ("holds" / "does not hold")."""
    ours = pafl_by_method(results)
    lines = [*table(ours), ""]
    lines += [f"- {'holds' if ok else 'does NOT hold'}: {text}" for text, ok in findings(ours)]
    return "\n".join(lines)
