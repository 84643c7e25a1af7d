"""Every explainer on every reference architecture: finite maps, the model left exactly as it was and the
method's axiom (IG completeness, DeepLIFT/DeepSHAP summation-to-delta, LRP-z conservation without biases),
or a one-line refusal that names the module. The cells are `attribench_methods.architecture_matrix`'s; the
expected outcome of each is pinned below, so a cell that changes either way fails."""

from __future__ import annotations

import pytest
import torch
from attribench_methods import architecture_matrix as matrix
from attribench_methods.backprop_rules import GuidedBackprop
from attribench_methods.model_checks import UnsupportedModelError
from torch import nn

EXPLAINERS = matrix.explainers()
COLUMNS = ("ResNet-18", "VGG-11-BN", "EfficientNet-B0", "HF ResNet", "HF ConvNeXt", "HF ViT")

# "ok", "axiom" (runs, misses its axiom), "refuses X" (one-line UnsupportedModelError containing X, which
# names the module), "fails X" (any other outcome; none today).
OK, AXIOM = "ok", "axiom"
NO_RELU_SILU = "refuses no nn.ReLU: its activation modules are SiLU, Sigmoid"
NO_RELU_GELU = "refuses no nn.ReLU: its activation modules are GELUActivation"
# RevealCancel runs layer by layer: it refuses the residual `out += identity` (at the ReLU it feeds) and
# inputs computed outside layer modules (the squeeze-excitation product, ConvNeXt's layer-scale product, the
# ViT embedding's torch.cat of the class token). The LRP family and DeepLIFT run on those networks.
RESIDUAL = "refuses 'layer1.0.relu (call 2)' (ReLU) is changed in place"
HF_RESIDUAL = "refuses resnet.encoder.stages.0.layers.0.activation' (ReLU) is changed in place"
SE_PRODUCT = "refuses 'features.1.0.block.2.0' (Conv2d) is computed outside any layer module"
CONVNEXT_ADD = "refuses convnext.encoder.stages.0.layers.0.drop_path' (Identity) is computed outside"
VIT_CONCAT = "refuses vit.embeddings.dropout' (Dropout) is computed outside any layer module"
# LRP: LayerNorm has no rule here, ViT's embeddings use parameters of their own (class token, positions).
LAYER_NORM = "refuses convnext.embeddings.layernorm' (ConvNextLayerNorm) has no LRP rule"
VIT_EMBEDDINGS = "refuses vit.embeddings' (ViTEmbeddings) uses its own parameters"
# DeepLIFT/DeepSHAP: normalisation by the input's own statistics has no DeepLIFT rule.
DL_CONVNEXT = "refuses convnext.embeddings.layernorm' (ConvNextLayerNorm) has no DeepLIFT rule"
DL_VIT = "refuses vit.layers.0.layernorm_before' (LayerNorm) has no DeepLIFT rule"
# CAM methods on a ViT: its only Conv2d is the patch embedding, never a CAM layer; a layer with `:tokens`
# must be given (test_cam_layers.py covers that path).
VIT_CAM = "refuses no convolutional feature map; pass --cam-layer NAME:tokens"
# (Hugging Face module paths are matched without the `Logits` wrapper's "network." prefix.)

# fmt: off
EXPECTED: dict[str, tuple[str, ...]] = {
    #                         ResNet-18  VGG-11-BN  EfficientNet-B0  HF ResNet  HF ConvNeXt  HF ViT
    "gradient":              (OK,        OK,        OK,              OK,        OK,          OK),
    "smoothgrad":            (OK,        OK,        OK,              OK,        OK,          OK),
    "smoothgrad_sq":         (OK,        OK,        OK,              OK,        OK,          OK),
    "vargrad":               (OK,        OK,        OK,              OK,        OK,          OK),
    "input_x_gradient":      (OK,        OK,        OK,              OK,        OK,          OK),
    # HF ConvNeXt: a bias-free patchify conv then LayerNorm make f(αx) constant for α > 1e-5 and f(0) = 0,
    # so the zero-baseline path integral has a jump at 0 that no quadrature sees.
    "ig":                    (OK,        OK,        OK,              OK,        AXIOM,       OK),
    "ig_sg":                 (OK,        OK,        OK,              OK,        OK,          OK),
    "ig_sq":                 (OK,        OK,        OK,              OK,        OK,          OK),
    "ig_var":                (OK,        OK,        OK,              OK,        OK,          OK),
    "gradient_shap":         (OK,        OK,        OK,              OK,        OK,          OK),
    "guided_backprop":       (OK,        OK,        NO_RELU_SILU,    OK,        NO_RELU_GELU, NO_RELU_GELU),
    "deconvnet":             (OK,        OK,        NO_RELU_SILU,    OK,        NO_RELU_GELU, NO_RELU_GELU),
    "guided_gradcam":        (OK,        OK,        NO_RELU_SILU,    OK,        NO_RELU_GELU, VIT_CAM),
    "gradcam":               (OK,        OK,        OK,              OK,        OK,          VIT_CAM),
    "iba":                   (OK,        OK,        OK,              OK,        OK,          VIT_CAM),
    "deeplift":              (OK,        OK,        OK,              OK,        DL_CONVNEXT, DL_VIT),
    "deepshap":              (OK,        OK,        OK,              OK,        DL_CONVNEXT, DL_VIT),
    "deeplift_rc":           (RESIDUAL,  OK,        SE_PRODUCT,      HF_RESIDUAL, CONVNEXT_ADD, VIT_CONCAT),
    "lrp_z":                 (OK,        OK,        OK,              OK,        LAYER_NORM,  VIT_EMBEDDINGS),
    "lrp_epsilon":           (OK,        OK,        OK,              OK,        LAYER_NORM,  VIT_EMBEDDINGS),
    "lrp_alpha1beta0_flat":  (OK,        OK,        OK,              OK,        LAYER_NORM,  VIT_EMBEDDINGS),
    "lrp_alpha2beta1_flat":  (OK,        OK,        OK,              OK,        LAYER_NORM,  VIT_EMBEDDINGS),
    "deep_taylor":           (OK,        OK,        OK,              OK,        LAYER_NORM,  VIT_EMBEDDINGS),
    "occlusion":             (OK,        OK,        OK,              OK,        OK,          OK),
    "extremal_perturbation": (OK,        OK,        OK,              OK,        OK,          OK),
    "random":                (OK,        OK,        OK,              OK,        OK,          OK),
    "edge":                  (OK,        OK,        OK,              OK,        OK,          OK),
}
# fmt: on


def test_the_matrix_covers_every_explainer_and_architecture() -> None:
    assert set(EXPECTED) == set(EXPLAINERS)
    assert tuple(matrix.ARCHITECTURES) == COLUMNS
    assert all(len(row) == len(COLUMNS) for row in EXPECTED.values())


@pytest.mark.parametrize("architecture", COLUMNS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cell(name: str, architecture: str) -> None:
    if not matrix.ARCHITECTURES[architecture].available:
        pytest.skip(f"{architecture} needs {matrix.ARCHITECTURES[architecture].requires}")
    expected = EXPECTED[name][COLUMNS.index(architecture)]
    outcome = matrix.run_cell(name, architecture, EXPLAINERS[name])
    kind, _, named = expected.partition(" ")
    assert (outcome.kind, named in outcome.detail) == (kind, True), outcome.detail


def test_sum_rule_gap_is_relative_to_the_logits() -> None:
    # f(x) = 2·Σx on a 1×1×2×1 image; the map sums to 3 instead of f(x) − f(0) = 4: gap |3 − 4| / (4 + 0).
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    nn.init.constant_(model[1].weight, 2.0)
    inputs = torch.ones(1, 1, 2, 1)
    assert matrix.sum_rule_gap(model, torch.full_like(inputs, 1.5), inputs, torch.tensor([0])) == 0.25


def test_calibrated_models_depend_on_their_input_and_have_unit_scale_logits() -> None:
    for name in ("ResNet-18", "VGG-11-BN", "EfficientNet-B0"):
        model = matrix.reference_architecture(name)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert not model.training and not any(m.training for m in norms)
        assert all(not torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in norms)
        with torch.no_grad():
            logits = model(torch.rand(8, 3, 32, 32, generator=matrix.seeded(5)))
        assert 0.3 < float(logits.std()) < 3, name  # unit std on the calibration images, similar on others
        assert float((logits[0] - logits[1]).abs().max()) > 0.01, name


def test_relu_rules_say_when_a_model_has_no_activation_modules() -> None:
    class FunctionalReLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)).mean((2, 3))

    with pytest.raises(UnsupportedModelError, match=r"defined for ReLU networks .* no activation modules"):
        GuidedBackprop()(FunctionalReLU(), torch.rand(1, 3, 8, 8), torch.tensor([0]))
