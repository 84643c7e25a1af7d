"""The plugin registers every method of the README's table lazily, with valid names, importable targets and
declared Params."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import import_module

import pytest
from attribench_methods import plugin

from attribench_core.explainer import Explainer
from attribench_core.params import Param
from attribench_core.testing import refused_run

EXPECTED = {
    "gradient",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "deconvnet",
    "guided_backprop",
    "guided_gradcam",
    "input_x_gradient",
    "ig",
    "ig_sg",
    "ig_sq",
    "ig_var",
    "lrp_z",
    "lrp_epsilon",
    "lrp_alpha1beta0_flat",
    "lrp_alpha2beta1_flat",
    "deep_taylor",
    "deeplift",
    "deeplift_rc",
    "gradcam",
    "deepshap",
    "gradient_shap",
    "occlusion",
    "extremal_perturbation",
    "iba",
    "random",
    "edge",
}  # fmt: skip (the 27 names of the methods spec)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def test_registers_every_method_of_the_spec_with_valid_unique_names(zoo) -> None:
    calls = zoo.registrations()
    assert {c["name"] for c in calls} == EXPECTED and len(calls) == len(EXPECTED)
    names = [c["name"] for c in calls] + [a for c in calls for a in c.get("aliases", ())]
    assert len(names) == len(set(names))
    assert all(NAME.match(n) for n in names)
    assert all(c["description"] for c in calls)


def test_targets_are_lazy_strings_of_explainer_classes_with_params(zoo) -> None:
    for call in zoo.registrations():
        target = call["target"]
        assert isinstance(target, str) and re.fullmatch(r"attribench_methods\.\w+:\w+", target)
        module, _, attr = target.partition(":")
        cls = getattr(import_module(module), attr)
        assert isinstance(cls, type) and issubclass(cls, Explainer), target
        assert all(isinstance(p, Param) for p in cls.parameters), target
        assert all(p.check(p.default) == p.default for p in cls.parameters), target
        assert cls().params == {p.name: p.default for p in cls.parameters}
        assert call.get("channel_less", False) == cls.channel_less, target


def test_importing_the_plugin_does_not_import_torch_or_captum() -> None:
    code = (
        "import sys, attribench_methods.plugin as p; "
        "assert hasattr(p, 'register_explainers'); "
        "print(sorted(m for m in ('torch', 'captum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("smoothgrad:sigma=-1", "Parameter 'sigma' must be at least 0; got -1.0."),
        ("ig:steps=0", "Parameter 'steps' must be at least 1; got 0."),
        ("lrp_epsilon:epsilon=0", "Parameter 'epsilon' must be greater than 0; got 0.0."),
        ("lrp_alpha1beta0_flat:epsilon=-1", "Parameter 'epsilon' must be greater than 0; got -1.0."),
        ("iba:learning_rate=0", "Parameter 'learning_rate' must be greater than 0; got 0.0."),
        (
            "extremal_perturbation:learning_rate=-0.1",
            "Parameter 'learning_rate' must be greater than 0; got -0.1.",
        ),
        ("extremal_perturbation:area=1", "Parameter 'area' must be greater than 0 and less than 1; got 1.0."),
        ("occlusion:window=2,stride=3", "Parameter 'stride' (3) must not exceed 'window' (2)."),
        ("deep_taylor:low=1,high=0", "Parameters 'low' < 'high' required; got low=1.0, high=0.0."),
    ],
)
def test_parameters_out_of_range_are_refused_when_the_command_is_read(spec, message):
    """Exit 2 with one line, before any data, model or store is touched."""
    assert refused_run({"methods": plugin}, ["core.pointing_game", "-e", spec]) == f"Usage error: {message}\n"
