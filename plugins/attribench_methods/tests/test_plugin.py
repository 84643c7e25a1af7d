"""The plugin registers the 12 methods lazily, with valid names, importable targets and declared Params."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import import_module

from attribench_core.explainer import Explainer
from attribench_core.params import Param

EXPECTED = {
    "gradient", "smoothgrad", "smoothgrad_sq", "input_x_gradient", "ig", "guided_backprop",
    "deconvnet", "gradcam", "deeplift", "lrp_epsilon", "random", "edge",
}  # fmt: skip
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def test_registers_the_twelve_methods_with_valid_unique_names(zoo) -> None:
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
