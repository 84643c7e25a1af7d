"""The `Modified` explainer: a registered explainer's maps through `saliency` and `modify`, `[B,1,H,W]`."""

from __future__ import annotations

import attribench_methods.plugin
import attribench_soco.plugin
import pytest
import torch
from attribench_soco.explainers import Modified
from attribench_soco.maps import saliency
from attribench_soco.modify import modify

from attribench_core.errors import ParameterError, UnknownNameError
from attribench_core.runner import parse_explainer
from attribench_core.testing import check_explainer, plugin_registry, tiny_model

REGISTRY = plugin_registry({"methods": attribench_methods.plugin, "soco": attribench_soco.plugin})


def _batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    inputs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return tiny_model(), inputs, torch.tensor([0, 3])


@pytest.mark.parametrize(("mode", "scheme"), [("remove", "random"), ("introduce", "partial")])
def test_output_is_the_modified_saliency_of_the_base_attributions(mode, scheme):
    model, inputs, targets = _batch()
    out = Modified(registry=REGISTRY, base="gradient", mode=mode, scheme=scheme)(
        model, inputs, targets, generator=torch.Generator().manual_seed(7)
    )
    generator = torch.Generator().manual_seed(7)
    base = REGISTRY.resolve("explainer", "gradient").load()()
    expected = modify(saliency(base(model, inputs, targets, generator=generator)), mode, scheme, generator)
    assert out.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out, expected.unsqueeze(1))


@pytest.mark.parametrize("base", ["methods.ig:steps=4", "gradcam"])
def test_the_explainer_contract_holds_for_gradient_and_cam_bases(base):
    out = check_explainer(Modified(registry=REGISTRY, base=base, mode="introduce", scheme="random"), size=8)
    assert out.min() >= 0 and out.max() <= 1


def test_a_stochastic_reference_using_base_gets_the_run_generator_and_references():
    model, inputs, targets = _batch()
    references = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))

    def run(seed: int) -> torch.Tensor:
        explainer = Modified(
            registry=REGISTRY, base="gradient_shap:samples=4,background_size=4", scheme="partial"
        )
        generator = torch.Generator().manual_seed(seed)
        return explainer(model, inputs, targets, generator=generator, references=lambda n: references[:n])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    with pytest.raises(ValueError, match="needs reference images"):
        Modified(registry=REGISTRY, base="gradient_shap")(model, inputs, targets)


def test_the_command_line_form_resolves_and_builds():
    config = parse_explainer(REGISTRY, "soco.modified:base=gradient,mode=introduce,scheme=partial")
    explainer = config.build()
    assert explainer.params == {"base": "gradient", "mode": "introduce", "scheme": "partial"}
    assert type(explainer.base).__name__ == "Gradient"


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"mode": "delete"},
            ParameterError,
            "Parameter 'mode' must be one of remove, introduce; got 'delete'.",
        ),
        ({"scheme": "x"}, ParameterError, "Parameter 'scheme' must be one of constant, random, partial"),
        ({"base": "nope"}, UnknownNameError, "Parameter 'base' = 'nope': Unknown explainer 'nope'."),
        (
            {"base": "ig:stepz=3"},
            ParameterError,
            "Parameter 'base' = 'ig:stepz=3': Unknown parameter 'stepz'",
        ),
    ],
)
def test_bad_parameters_are_one_line_errors(params, error, message):
    with pytest.raises(error) as info:
        Modified(registry=REGISTRY, **params)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
