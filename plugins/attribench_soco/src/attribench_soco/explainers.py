"""Explainers of the `soco` plugin: another explainer's maps after a Remove/Introduce modification, so that
any metric can be run on modified attributions (paper §5.2, Table 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from attribench_core import Explainer, Param, UsageProblem, parse_assignments
from attribench_soco.maps import saliency
from attribench_soco.modify import MODES, SCHEMES, modify

if TYPE_CHECKING:
    from attribench_core import Registry


class Modified(Explainer):
    """A registered explainer's attributions reduced to SoCo saliency maps (|a| channel mean, min-max to
    [0,1]) and modified by Remove or Introduce (constant, random or partial; paper Table 3), `[B,1,H,W]`.

    `base` is any explainer name of `registry` (which the plugin binds at registration), optionally with
    its parameters (`ig:steps=32`; on the command line one parameter, since commas separate ours). The base
    runs with the run's generator and reference images; the random schemes then draw from the same generator.
    """

    channel_less = True
    parameters = (
        Param("base", "methods.ig", "explainer whose maps are modified, e.g. ig, gradcam, ig:steps=32", str),
        Param("mode", "remove", "remove or introduce attribution", str, MODES),
        Param("scheme", "constant", "constant (±0.6), random (U(0,0.6) per pixel) or partial", str, SCHEMES),
    )

    def __init__(self, *, registry: Registry, **params: Any) -> None:
        super().__init__(**params)
        name, _, given = self.params["base"].partition(":")
        try:
            entry = registry.resolve("explainer", name.strip())
            self.base: Explainer = entry.create(**parse_assignments(given, owner=entry.qualified))
        except UsageProblem as exc:  # name the parameter at fault, keep the error's kind (CLI exit code)
            raise type(exc)(f"Parameter 'base' = {self.params['base']!r}: {exc}") from None

    def explain(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        attributions = self.base(
            model, inputs, targets, generator=self.generator, references=self._references
        )
        maps = modify(saliency(attributions), self.params["mode"], self.params["scheme"], self.generator)
        return maps.unsqueeze(1)
