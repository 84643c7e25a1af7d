"""Post-processing families on hand-made attributions, the name -> family table, and the original's recipe."""

import numpy as np
import pytest
import torch
from attribench_smerf import postprocess as pp


def _row(*channels: list[float]) -> torch.Tensor:
    """`[1,C,1,W]` from one list of W values per channel."""
    return torch.tensor([[[c] for c in channels]])


def test_every_methods_explainer_has_an_explicit_family():
    plugin = pytest.importorskip("attribench_methods.plugin")
    from attribench_core.testing import plugin_registry

    names = {e.name for e in plugin_registry({"methods": plugin}).entries("explainer", "methods")}
    assert names <= set(pp.METHOD_FAMILIES), (
        f"map these in METHOD_FAMILIES: {names - set(pp.METHOD_FAMILIES)}"
    )
    assert set(pp.METHOD_FAMILIES.values()) <= set(pp.FAMILIES)


def test_family_lookup():
    assert pp.family("methods.ig") == pp.HEATMAP
    assert pp.family("methods.ig:steps=32") == pp.HEATMAP  # a store label with parameters
    assert pp.family("methods.gradient") == pp.GRAYMAP
    assert pp.family("methods.guided_backprop") == pp.family("methods.deconvnet") == pp.BK_PROJ
    assert pp.family("methods.deepshap") == pp.MINMAX
    assert pp.family("methods.gradcam") == pp.GRADCAM
    assert (pp.family("methods.random"), pp.family("methods.edge")) == (pp.RANDOM, pp.EDGE)
    assert pp.family("someone.gradient") == pp.family("methods.unknown") == pp.DEFAULT_FAMILY


def test_heatmap_seismic_levels():
    # channel sums -2, 0, 1, 2 -> /2 -> colormap indices int(255·(v+1)/2) = 0, 127, 191, 255
    got = pp.paper_map(_row([-2.0, 0.0, 1.0, 2.0], [0.0] * 4, [0.0] * 4), pp.HEATMAP)[0, 0]
    # seismic anchors (0,0,.3) (0,0,1) (1,1,1) (1,0,0) (.5,0,0) at 0, 1/4, 1/2, 3/4, 1; map = 1 - mean RGB
    expected = [1 - 0.3 / 3, 2 * (2 / 255) / 3, 2 * (254 / 255) / 3, 1 - 0.5 / 3]
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_graymap_is_quantised_magnitude():
    got = pp.paper_map(_row([1.0, -2.0, 0.5], [-1.0, 0.0, 0.1]), pp.GRAYMAP)[0, 0]
    assert got.tolist() == pytest.approx([1.0, 1.0, 76 / 255])  # |a| sums 2, 2, 0.6 -> 255·0.3 = 76.5 -> 76


def test_bk_proj_clips_projects_and_puts_zero_at_one_half():
    got = pp.paper_map(_row([-4.0, 0.0, 1.0, 3.0]), pp.BK_PROJ)[0, 0]
    low, high = -4 + 0.03 * 4, 1 + 0.97 * 2  # np.percentile 1 and 99 of 4 values (linear)
    clipped = np.array([low, 0.0, 1.0, high])
    assert got.tolist() == pytest.approx((clipped / -low + 1) / 2)
    assert got[1].item() == 0.5
    # the percentiles span the batch: with a second sample the 1st percentile of 8 values is -4 + 0.07·4
    batch = torch.cat([_row([-4.0, 0.0, 1.0, 3.0]), _row([0.0, 0.0, 0.0, 100.0])])
    assert pp.paper_map(batch, pp.BK_PROJ)[0, 0, 3].item() == pytest.approx((3 / 3.72 + 1) / 2)


def test_minmax_gradcam_random_edge_and_uniform():
    assert pp.paper_map(_row([-1.0, 1.0], [3.0, -1.0]), pp.MINMAX)[0, 0].tolist() == [1.0, 0.5]
    assert pp.paper_map(_row([-1.0, 2.0, 4.0]), pp.GRADCAM)[0, 0].tolist() == [0.0, 0.5, 1.0]
    assert pp.paper_map(_row([1.0, 0.0], [0.0, 2.0]), pp.GRADCAM)[0, 0].tolist() == [0.5, 1.0]
    assert pp.paper_map(_row([-1.0, 0.0, -2.0]), pp.GRADCAM)[0, 0].tolist() == [0.0, 0.0, 0.0]
    assert pp.paper_map(_row([0.25, 0.75]), pp.RANDOM)[0, 0].tolist() == [0.75, 0.25]
    assert pp.paper_map(_row([0.3, 0.6], [0.6, 0.0], [0.0, 0.3]), pp.RANDOM)[0, 0].tolist() == pytest.approx(
        [0.7, 0.7]
    )
    assert pp.paper_map(_row([-2.0, 0.0, 2.0]), pp.EDGE)[0, 0].tolist() == [1.0, 0.5, 0.0]
    assert pp.uniform_map(_row([1.0, -2.0], [-3.0, 0.0]))[0, 0].tolist() == [4.0, 2.0]


def test_postprocess_modes_and_errors():
    a = torch.randn(2, 3, 5, 5)
    assert torch.equal(pp.postprocess(a, "methods.guided_backprop"), pp.paper_map(a, pp.BK_PROJ))
    assert torch.equal(pp.postprocess(a, "methods.guided_backprop", mode="uniform"), a.abs().sum(1))
    assert pp.postprocess(a[:, :1], "methods.ig").shape == (2, 5, 5)
    with pytest.raises(ValueError, match="mode"):
        pp.postprocess(a, "methods.ig", mode="abs")
    with pytest.raises(ValueError, match="family"):
        pp.paper_map(a, "seismic")
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        pp.postprocess(a[:, 0], "methods.ig")


def _original(a: np.ndarray, family: str) -> np.ndarray:
    """SMERF's stage A (textcolor_utils heatmap/graymap/bk_proj, channels last) and stage B (get_afl)."""
    colormaps = pytest.importorskip("matplotlib").colormaps

    def scaled(x):
        return x / np.abs(x).max(axis=tuple(range(1, x.ndim)), keepdims=True)

    if family == pp.HEATMAP:
        index = (np.clip((scaled(a.sum(-1)) + 1) / 2, 0, 1) * 255).astype(np.int64)
        return 1 - colormaps["seismic"](index)[..., :3].mean(-1)
    if family == pp.GRAYMAP:
        index = (np.clip(scaled(np.abs(a).sum(-1)), 0, 1) * 255).astype(np.int64)
        return colormaps["gray"](index)[..., :3].max(-1)
    low, high = np.percentile(a, [1, 99])
    return np.clip((scaled(np.clip(a, low, high)) + 1) / 2, 0, 1).max(-1)


@pytest.mark.parametrize("family", [pp.HEATMAP, pp.GRAYMAP, pp.BK_PROJ])
def test_colormap_families_match_the_original_recipe(family):
    a = np.random.default_rng(0).normal(size=(20, 16, 16, 3)).astype(np.float32)
    got = pp.paper_map(torch.from_numpy(a).permute(0, 3, 1, 2), family)
    np.testing.assert_allclose(got.numpy(), _original(a, family), atol=1e-6)
