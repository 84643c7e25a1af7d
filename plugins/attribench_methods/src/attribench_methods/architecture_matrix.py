"""The explainer × architecture matrix: every explainer of this plugin on small reference architectures
(`attribench_core.reference_models`), one outcome per cell. Shared by the test suite, which pins each cell's
expected outcome, and by `scripts/architecture_matrix.py`, which prints the table in the README.

A cell is
- "ok": finite maps of the right shape, the model left exactly as it was (state dict bit for bit, hooks,
  modes, attributes), and the method's axiom, where it has one, within its tolerance;
- "axiom": all that but the axiom; the detail gives the gap;
- "refuses": a one-line `AttribenchError` that should name the module (`UnsupportedModelError`, or the
  core's `ModelError` for CAM layers and TorchScript);
- "fails": anything else (another exception, a bad map, a changed model, a multi-line refusal).

Every axiom checked here is a sum rule, Σ map = f(x) − f(0) for the target logit f and the zero reference:
IG's completeness (Sundararajan et al. 2017), DeepLIFT's and DeepSHAP's summation-to-delta (Shrikumar et al.
2017; one zero background image), and LRP-z's conservation (Bach et al. 2015), which needs a model without
biases (there f(0) = 0): LRP-z cells run on the architecture with every bias, BatchNorm shift and running
mean set to zero. The gap is the largest over the images of |Σ map − (f(x) − f(0))| / (|f(x)| + |f(0)|).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

import torch
from torch import nn

from attribench_core import AttribenchError, Explainer, Logits, reference_models
from attribench_core.testing import model_changes, model_snapshot, plugin_registry
from attribench_methods import plugin

NUM_CLASSES = 4
IMAGES = 2


@dataclass(frozen=True)
class Architecture:
    """How to build one column's model (`NUM_CLASSES` outputs), its image size, and the optional package it
    needs (its cells are skipped without it)."""

    build: Callable[[], nn.Module]
    image_size: int
    requires: str | None = None

    @property
    def available(self) -> bool:
        return self.requires is None or find_spec(self.requires) is not None


ARCHITECTURES = {
    "ResNet-18": Architecture(lambda: reference_models.resnet18(NUM_CLASSES, width=8), 32),
    "VGG-11-BN": Architecture(
        lambda: reference_models.vgg11_bn(NUM_CLASSES, width=4, classifier_width=16), 32
    ),
    "EfficientNet-B0": Architecture(
        lambda: reference_models.efficientnet_b0(NUM_CLASSES, width_mult=0.25, depth_mult=0.25), 32
    ),
    "HF ResNet": Architecture(
        lambda: Logits(reference_models.tiny_hf_model("resnet", NUM_CLASSES)), 32, "transformers"
    ),
    "HF ConvNeXt": Architecture(
        lambda: Logits(reference_models.tiny_hf_model("convnext", NUM_CLASSES)), 32, "transformers"
    ),
    "HF ViT": Architecture(
        lambda: Logits(reference_models.tiny_hf_model("vit", NUM_CLASSES, image_size=32)),
        32,
        "transformers",
    ),
}

# Parameters that keep every cell cheap. IG keeps enough steps for its completeness check: along the path,
# these random ReLU networks cross hundreds of kinks, and Gauss-Legendre nodes (the default) converge more
# slowly than the trapezoid rule there (ResNet-18: 15 % vs 2 % at 256 steps; 56 % vs 40 % at 64).
CHEAP_PARAMS: dict[str, dict[str, object]] = {
    "smoothgrad": {"samples": 2},
    "smoothgrad_sq": {"samples": 2},
    "vargrad": {"samples": 2},
    "ig": {"steps": 256, "method": "riemann_trapezoid"},
    "ig_sg": {"samples": 2, "steps": 4},
    "ig_sq": {"samples": 2, "steps": 4},
    "ig_var": {"samples": 2, "steps": 4},
    "gradient_shap": {"samples": 2, "background": "zeros"},
    "deepshap": {"background": "zeros"},
    "occlusion": {"window": 8, "stride": 8},
    "extremal_perturbation": {"steps": 2},
    "iba": {"steps": 2, "samples": 2, "estimation_images": 4},
}


@dataclass(frozen=True)
class Axiom:
    """A sum rule Σ map = f(x) − f(0) and the largest relative gap accepted."""

    name: str
    tolerance: float
    zero_biases: bool = False


AXIOMS = {
    # Piecewise-linear integrand: the quadrature's error shrinks like 1/steps (≤ 2.1 % at 256 steps here).
    "ig": Axiom("completeness", 0.05),
    # Exact in exact arithmetic; the methods themselves warn above 0.1 %.
    "deeplift": Axiom("summation-to-delta", 1e-3),
    "deeplift_rc": Axiom("summation-to-delta", 1e-3),
    "deepshap": Axiom("summation-to-delta", 1e-3),
    "lrp_z": Axiom("conservation", 1e-3, zero_biases=True),
}


@dataclass(frozen=True)
class Outcome:
    """One cell: its kind ("ok", "axiom", "refuses", "fails"), a one-line detail, and the axiom's gap."""

    kind: str
    detail: str = ""
    gap: float | None = None


def explainers() -> dict[str, type[Explainer]]:
    """This plugin's explainers by registered name, loaded through a registry as a run loads them."""
    registry = plugin_registry({"methods": plugin})
    return {entry.name: entry.load() for entry in registry.entries("explainer", plugin="methods")}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def calibrate(model: nn.Module, size: int, generator: torch.Generator, images: int = 16) -> None:
    """Make random weights behave like trained ones where attribution methods can tell.

    BatchNorm gets random affine parameters and running statistics measured on `images` random size²
    images: fresh statistics make it the identity, which hides whatever a method does wrong with it, and
    random ones shrink the signal stage by stage until the logits no longer depend on the input. The last
    Linear layer is scaled so that the logits have unit standard deviation: VGG's init gives logits of
    1e-5, where relative gaps would measure float rounding."""
    probe = torch.rand(images, 3, size, size, generator=generator)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(0.5 + torch.rand(norm.num_features, generator=generator))
            norm.bias.copy_(0.2 * torch.randn(norm.num_features, generator=generator))
            norm.reset_running_stats()
            norm.momentum = None  # running statistics = this pass's batch statistics
            norm.train()
        model(probe)
        for norm in norms:
            norm.momentum = 0.1
            norm.eval()
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        scale = model(probe).std()
        last.weight.div_(scale)
        if last.bias is not None:
            last.bias.div_(scale)


def zero_biases(model: nn.Module) -> None:
    """Every bias, BatchNorm shift and running mean set to zero: f(0) = 0 for a ReLU network."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("bias", "running_mean")):
                tensor.zero_()


def reference_architecture(name: str, *, without_biases: bool = False, seed: int = 0) -> nn.Module:
    """The column `name`'s model: seeded, calibrated, in eval mode."""
    torch.manual_seed(seed)
    model = ARCHITECTURES[name].build().eval()
    calibrate(model, ARCHITECTURES[name].image_size, seeded(seed))
    if without_biases:
        zero_biases(model)
    return model


def target_logits(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs).gather(1, targets[:, None]).squeeze(1)


def sum_rule_gap(model: nn.Module, maps: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """max over images of |Σ map − (f(x) − f(0))| / (|f(x)| + |f(0)|)."""
    at_x = target_logits(model, inputs, targets)
    at_zero = target_logits(model, torch.zeros_like(inputs), targets)
    gaps = (maps.flatten(1).sum(1) - (at_x - at_zero)).abs() / (at_x.abs() + at_zero.abs())
    return float(gaps.max())


def run_cell(method: str, architecture: str, explainer_class: type[Explainer]) -> Outcome:
    """Run `explainer_class` (registered as `method`) on `IMAGES` random images through the column's model
    and classify what happened."""
    axiom = AXIOMS.get(method)
    model = reference_architecture(architecture, without_biases=axiom is not None and axiom.zero_biases)
    size = ARCHITECTURES[architecture].image_size
    inputs = torch.rand(IMAGES, 3, size, size, generator=seeded(1))
    targets = torch.arange(IMAGES) % NUM_CLASSES
    explainer = explainer_class(**CHEAP_PARAMS.get(method, {}))
    before = model_snapshot(model)
    try:
        maps = explainer(
            model,
            inputs,
            targets,
            generator=seeded(7),
            references=lambda n: torch.rand(n, 3, size, size, generator=seeded(2)),
        )
    except AttribenchError as exc:  # UnsupportedModelError, or the core's ModelError (CAM layer, TorchScript)
        outcome = Outcome("refuses", str(exc)) if "\n" not in str(exc) else Outcome("fails", repr(str(exc)))
    except Exception as exc:
        outcome = Outcome("fails", f"{type(exc).__name__}: {exc}".splitlines()[0])
    else:
        outcome = None
    changes = model_changes(before, model_snapshot(model))
    if changes:
        return Outcome("fails", f"changed the model: {', '.join(changes[:3])}")
    if outcome is not None:
        return outcome
    expected = (IMAGES, 1 if explainer.channel_less else 3, size, size)
    if tuple(maps.shape) != expected or not torch.isfinite(maps).all():
        return Outcome(
            "fails", f"maps of shape {tuple(maps.shape)}, finite: {bool(torch.isfinite(maps).all())}"
        )
    if axiom is None:
        return Outcome("ok")
    gap = sum_rule_gap(model, maps, inputs, targets)
    kind = "ok" if gap <= axiom.tolerance else "axiom"
    return Outcome(kind, f"{axiom.name} gap {gap:.2%} (tolerance {axiom.tolerance:.1%})", gap)
