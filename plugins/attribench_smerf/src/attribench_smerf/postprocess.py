"""Reduce an attribution `[B,C,H,W]` (or `[B,1,H,W]`) to the 2-D map `[B,H,W]` that SMERF's metrics use.

Two modes:

- `"paper"` (default): the original code's recipe per method family (wnstlr/SMERF `explanations.py`,
  `textcolor_utils.py`, `eval.py`; research notes §3.2). Each family has a "stage A" (the image the
  original stored: a colormap lookup or a projection) and a "stage B" (`get_afl`: `1 - mean` over RGB for
  methods tagged `heatmap`, else `max` over channels). Both stages are done here:

  - `heatmap` (DeepTaylor, I×G, IG, LRP-z/ε/A-flat/B-flat, DeepLIFT-RC/Rescale): the channel sum divided
    by its max |value|, colormap index int(255·(v + 1)/2), matplotlib's 'seismic' RGB there, 1 − mean RGB.
    About |Σ_c a| (slope 4/3 up to |v| = 0.5, flatter beyond, f(+1) = 0.83, f(−1) = 0.90), 256 levels,
    never below ≈ 0.005.
  - `graymap` (Gradient, SmoothGrad): floor(255·Σ_c|a| / max) / 255.
  - `bk_proj` (DeconvNet, Guided Backprop): clip to the batch's 1st–99th percentile, divide by the
    per-image max |a|, (a + 1)/2 (zero becomes 0.5), max over channels.
  - `minmax` (DeepSHAP): per-image min-max of the signed a, max over channels.
  - `gradcam` (Grad-CAM): ReLU, max over channels, divided by the per-image max.
  - `random` (Random): 1 − mean over channels.
  - `edge` (Sobel x edge detection): per-image min-max, then 1 − mean over channels.

- `"uniform"`: |a| summed over channels for every method (a like-for-like comparison).

Where `paper` differs from the original (it is exact otherwise):

- `bk_proj`: the percentiles are taken over the batch given here; the original took them over the
  20-image batch of one bucket (pass one bucket's images together to match).
- `random`: our `methods.random` draws one channel, so the map is 1 − U rather than 1 − mean of three
  uniforms (a 3-channel input gets the exact recipe).
- `edge`: our `methods.edge` is the Sobel x-derivative of the channel mean; the original min-max scaled
  the three per-channel Sobel maps jointly, then averaged them. Sobel is linear, so both maps are
  `c − d·(Sobel of the channel mean)` with d > 0, i.e. they differ by a positive affine transform, which
  SMERF's metrics do not see (blur, then min-max or ranks). The recipe inverts the edge map: falling
  edges (white → black) score high, rising ones low, flat regions in between.
- `gradcam`: our Grad-CAM applies the ReLU before the bilinear upsampling, the original after it; an
  all-zero map stays 0 (the original's 0/0 became 0 through `nan_to_num`).
- NaN attributions are not replaced by 0 (the original applied `np.nan_to_num`); they propagate.
"""

from __future__ import annotations

import numpy as np
import torch

HEATMAP, GRAYMAP, BK_PROJ, MINMAX, GRADCAM, RANDOM, EDGE = (
    "heatmap",
    "graymap",
    "bk_proj",
    "minmax",
    "gradcam",
    "random",
    "edge",
)
FAMILIES = (HEATMAP, GRAYMAP, BK_PROJ, MINMAX, GRADCAM, RANDOM, EDGE)
MODES = ("paper", "uniform")
DEFAULT_FAMILY = HEATMAP
"""For names not in `METHOD_FAMILIES` (third-party explainers): the original's default innvestigate
visualisation, which SMERF applied to every signed analyzer; monotone in the value for non-negative maps."""

METHOD_FAMILIES = {
    # SMERF's own assignment (explanations.py)
    "gradient": GRAYMAP,
    "smoothgrad": GRAYMAP,
    "smoothgrad_sq": GRAYMAP,  # what SMERF ran as "SmoothGrad" (innvestigate postprocess "square")
    "deconvnet": BK_PROJ,
    "guided_backprop": BK_PROJ,
    "deep_taylor": HEATMAP,
    "input_x_gradient": HEATMAP,
    "ig": HEATMAP,
    "lrp_z": HEATMAP,
    "lrp_epsilon": HEATMAP,
    "lrp_alpha1beta0_flat": HEATMAP,
    "lrp_alpha2beta1_flat": HEATMAP,
    "deeplift_rc": HEATMAP,
    "deeplift": HEATMAP,
    "gradcam": GRADCAM,
    "deepshap": MINMAX,
    "random": RANDOM,
    "edge": EDGE,
    # not in SMERF's runs: by analogy
    "vargrad": GRAYMAP,  # a gradient-magnitude ensemble, like SmoothGrad
    "ig_sg": HEATMAP,  # IG ensembles keep IG's family
    "ig_sq": HEATMAP,
    "ig_var": HEATMAP,
    "gradient_shap": HEATMAP,  # IG with random baselines
    "guided_gradcam": MINMAX,  # SMERF's grad_cam_utils min-max scaled its (discarded) Guided Grad-CAM
    "occlusion": HEATMAP,
    "extremal_perturbation": HEATMAP,
    "iba": HEATMAP,
}
"""Family of each `methods.<name>` explainer (canonical names; the runner resolves aliases)."""


def family(explainer: str) -> str:
    """Post-processing family of an explainer's qualified name or store label (`methods.ig:steps=32`).

    `methods.*` names come from `METHOD_FAMILIES`; any other name gets `DEFAULT_FAMILY`.
    """
    namespace, _, name = explainer.partition(":")[0].partition(".")
    if namespace == "methods" and name in METHOD_FAMILIES:
        return METHOD_FAMILIES[name]
    return DEFAULT_FAMILY


def _seismic_stage_b() -> torch.Tensor:
    """1 − mean(RGB) of matplotlib's 256-entry 'seismic' lookup table (linear between its 5 anchors)."""
    anchors = np.array([[0.0, 0.0, 0.3], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    where = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.interp(where, np.linspace(0.0, 1.0, 5), anchors[:, c]) for c in range(3)], axis=1)
    return torch.from_numpy(1.0 - rgb.mean(1))


SEISMIC_STAGE_B = _seismic_stage_b()
"""`[256]`: the `heatmap` family's map value for each colormap index."""


def _divide_by_absmax(x: torch.Tensor) -> torch.Tensor:
    """innvestigate's `project` scaling: divide each sample by its max |value| unless that is 0."""
    absmax = x.abs().amax(dim=tuple(range(1, x.dim())), keepdim=True)
    return torch.where(absmax != 0, x / absmax, x)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max to [0,1] over all but the batch axis; a constant sample is left as is."""
    dims = tuple(range(1, x.dim()))
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    return torch.where(high > low, (x - low) / (high - low), x)


def _colormap_index(x: torch.Tensor) -> torch.Tensor:
    """innvestigate's `project(..., output_range=(0, 255)).astype(int64)` of a [-1,1] or [0,1] map."""
    return (x.clamp(0, 1) * 255).long()


def paper_map(attributions: torch.Tensor, family: str) -> torch.Tensor:
    """`[B,C,H,W]` -> `[B,H,W]` by the original code's recipe for `family` (see the module docstring)."""
    a = _checked(attributions)
    if family == HEATMAP:
        index = _colormap_index((_divide_by_absmax(a.sum(1)) + 1) / 2)
        return SEISMIC_STAGE_B.to(a)[index]
    if family == GRAYMAP:
        return _colormap_index(_divide_by_absmax(a.abs().sum(1))).to(a.dtype) / 255
    if family == BK_PROJ:
        low, high = torch.quantile(a.flatten(), torch.tensor([0.01, 0.99], dtype=a.dtype, device=a.device))
        return ((_divide_by_absmax(a.clamp(low, high)) + 1) / 2).clamp(0, 1).amax(1)
    if family == MINMAX:
        return _minmax(a).amax(1)
    if family == GRADCAM:
        return _divide_by_absmax(a.clamp(min=0).amax(1))
    if family == RANDOM:
        return 1 - a.mean(1)
    if family == EDGE:
        return 1 - _minmax(a).mean(1)
    raise ValueError(f"Unknown post-processing family '{family}'; use one of {', '.join(FAMILIES)}.")


def uniform_map(attributions: torch.Tensor) -> torch.Tensor:
    """`[B,C,H,W]` -> `[B,H,W]`: |a| summed over channels, the same for every method."""
    return _checked(attributions).abs().sum(1)


def postprocess(attributions: torch.Tensor, explainer: str, mode: str = "paper") -> torch.Tensor:
    """The 2-D map of `explainer`'s attributions: `paper_map` with its `family`, or `uniform_map`."""
    if mode == "paper":
        return paper_map(attributions, family(explainer))
    if mode == "uniform":
        return uniform_map(attributions)
    raise ValueError(f"Unknown post-processing mode '{mode}'; use one of {', '.join(MODES)}.")


def _checked(attributions: torch.Tensor) -> torch.Tensor:
    if attributions.dim() != 4:
        raise ValueError(f"Expected attributions [B,C,H,W], got shape {tuple(attributions.shape)}.")
    return attributions if attributions.is_floating_point() else attributions.float()
