"""Tiny models and helpers for the methods plugin's tests (3×16×16 images, 5 classes, CPU, seconds).

Test modules cannot import this file under `--import-mode=importlib`, so everything is handed out as
fixtures: `zoo` (models and helpers), `make` (an explainer by registered name), `snapshot`; and any test
with a `method` argument runs for every registered name (`model_method`: those that use the model).
"""

from __future__ import annotations

import copy
from importlib import import_module
from typing import Any

import pytest
import torch
from attribench_methods import plugin
from torch import nn

from attribench_core.explainer import Explainer

NUM_CLASSES = 5


def registrations() -> list[dict[str, Any]]:
    """What `attribench_methods.plugin` registers, recorded with a fake `register`."""
    calls: list[dict[str, Any]] = []

    def register(name: str, target: Any, **kwargs: Any) -> None:
        calls.append({"name": name, "target": target, **kwargs})

    plugin.register_explainers(register)
    return calls


def load(target: str) -> type[Explainer]:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


EXPLAINERS = {call["name"]: load(call["target"]) for call in registrations()}
STOCHASTIC = {
    "smoothgrad",
    "smoothgrad_sq",
    "random",
    "vargrad",
    "ig_sg",
    "ig_sq",
    "ig_var",
    "gradient_shap",
    "iba",
}
MODEL_FREE = {"random", "edge"}
# Methods that propagate through layer modules only and refuse operations computed outside them (`+`, cat).
LAYER_CHAIN_ONLY = {"deeplift_rc"}
# Fewer samples/steps than the defaults, to keep the tests fast (the axiom tests name the counts they check).
FAST = {
    "smoothgrad": {"samples": 4},
    "smoothgrad_sq": {"samples": 4},
    "vargrad": {"samples": 4},
    "ig": {"steps": 8},
    "ig_sg": {"samples": 2, "steps": 8},
    "ig_sq": {"samples": 2, "steps": 8},
    "ig_var": {"samples": 2, "steps": 8},
    "gradient_shap": {"samples": 4, "background": "zeros"},
    "deepshap": {"background": "zeros"},
    "extremal_perturbation": {"steps": 20},
}
NEEDS_REFERENCES = {"iba"}


def make(name: str, **params: Any) -> Explainer:
    """An instance of the method registered as `name`, with the `FAST` settings unless given otherwise;
    methods that need reference images get fixed random ones (bound on the instance, as a run's are, so
    that direct `explain` calls see them too)."""
    explainer = EXPLAINERS[name](**{**FAST.get(name, {}), **params})
    if name in NEEDS_REFERENCES:
        explainer._references = reference_images
    return explainer


def reference_images(n: int) -> torch.Tensor:
    return torch.rand((n, 3, 16, 16), generator=torch.Generator().manual_seed(123))


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class SmallCNN(nn.Module):
    """Conv-ReLU-MaxPool-Conv-ReLU-Flatten-Linear; `fail=True` raises at the end of forward (after hooks)."""

    def __init__(self, *, inplace: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=bias),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1, bias=bias),
            nn.ReLU(inplace=inplace),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8 * 8, NUM_CLASSES, bias=bias))
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.classifier(self.features(x))
        if self.fail:
            raise RuntimeError("boom inside forward")
        return out


class ReusedReLUCNN(nn.Module):
    """SmallCNN's layers with one in-place ReLU module called twice (torchvision's ResNet style)."""

    def __init__(self, source: SmallCNN) -> None:
        super().__init__()
        source = copy.deepcopy(source)
        self.conv1, self.pool, self.conv2 = source.features[0], source.features[2], source.features[3]
        self.fc = source.classifier[1]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        return self.fc(self.relu(self.conv2(x)).flatten(1))


class TwoBranches(nn.Module):
    """Two parallel branches through one ReLU module (`shared=True`) or through two: the case where Captum's
    Deconvolution silently mixes up the calls of a shared module."""

    def __init__(self, *, shared: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 5, padding=2)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.relu2 = self.relu if shared else nn.ReLU()
        self.fc = nn.Linear(4 * 16 * 16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)  # both pre-activations exist before either ReLU runs
        return self.fc((self.relu(a) + self.c(self.relu2(b))).flatten(1))


def smooth_cnn() -> nn.Module:
    """Softplus/Tanh network: the IG path integrand is analytic, so Gauss-Legendre converges fast."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, NUM_CLASSES),
    )  # fmt: skip


def linear_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, NUM_CLASSES))


def scaled(model: nn.Module, factor: float = 3.0) -> nn.Module:
    """Weights multiplied by `factor`, so that logits are O(1) and relative tolerances mean something."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine they oversubscribe
    (10× slower under load); restored after each test so other plugins' tests are unaffected."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return scaled(SmallCNN())


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand((3, 3, 16, 16), generator=seeded(1))


@pytest.fixture
def targets() -> torch.Tensor:
    return torch.tensor([0, 2, 4])


def target_logits(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, t[:, None]).squeeze(1)


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything an explainer must leave as found: weights, grads, requires_grad, modes, every module's
    attribute names and plain values, and the sizes of all hook dictionaries (module and global)."""
    hooks = vars(torch.nn.modules.module)  # global ones: register_module_forward_hook & co.
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [(n, p.requires_grad, p.grad) for n, p in model.named_parameters()],
        "modules": [
            (
                name,
                m.training,
                sorted(vars(m)),
                {k: repr(v) for k, v in vars(m).items() if not k.startswith("_")},
                {k: len(v) for k, v in vars(m).items() if "hook" in k and isinstance(v, dict)},
            )
            for name, m in model.named_modules(remove_duplicate=False)
        ],
        "global_hooks": [len(v) for k, v in hooks.items() if k.startswith("_global") and isinstance(v, dict)],
    }


def assert_same_snapshot(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert [(n, rg, g is None) for n, rg, g in before["params"]] == [
        (n, rg, g is None) for n, rg, g in after["params"]
    ]
    assert before["modules"] == after["modules"]
    assert before["global_hooks"] == after["global_hooks"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "method" in metafunc.fixturenames:
        metafunc.parametrize("method", sorted(EXPLAINERS))
    if "model_method" in metafunc.fixturenames:
        metafunc.parametrize("model_method", sorted(set(EXPLAINERS) - MODEL_FREE))


class Zoo:
    """The test models and helpers, as one fixture."""

    SmallCNN = SmallCNN
    ReusedReLUCNN = ReusedReLUCNN
    TwoBranches = TwoBranches
    smooth_cnn = staticmethod(smooth_cnn)
    linear_model = staticmethod(linear_model)
    scaled = staticmethod(scaled)
    seeded = staticmethod(seeded)
    target_logits = staticmethod(target_logits)
    snapshot = staticmethod(snapshot)
    assert_same_snapshot = staticmethod(assert_same_snapshot)
    registrations = staticmethod(registrations)
    EXPLAINERS = EXPLAINERS
    STOCHASTIC = STOCHASTIC
    MODEL_FREE = MODEL_FREE
    LAYER_CHAIN_ONLY = LAYER_CHAIN_ONLY
    NUM_CLASSES = NUM_CLASSES


@pytest.fixture
def zoo() -> type[Zoo]:
    return Zoo


@pytest.fixture(name="make")
def make_fixture() -> Any:
    return make
