"""The Metric contract: declarations the runner checks and the CLI shows, and `compute` per explainer.

A metric never computes attributions itself: it asks its context, which reads them from the store (the
runner has computed what was missing beforehand, see `requests`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from attribench_core.params import Param, resolve_params

if TYPE_CHECKING:
    import numpy as np
    import torch

    from attribench_core.dataset import Batch, Dataset
    from attribench_core.model import Verification
    from attribench_core.permuted_labels import PermutedLabels
    from attribench_core.result import Result
    from attribench_core.store import Stored
    from attribench_core.variants import Alteration, Perturbation

# What an explainer explains: the model's prediction, the dataset label, or a class drawn at random among
# the others than the prediction (Sixt et al. 2020's random-logit test), per image from the run seed.
TARGETS = ("prediction", "label", "random_other")


@dataclass(frozen=True)
class AttributionRequest:
    """Attributions a metric needs: these dataset indices, on this (dataset, model), for each explainer;
    optionally of perturbed inputs and/or of an altered copy of the model (see `variants`), whose target is
    still taken from the unperturbed inputs on the unaltered model; optionally on the model's twin trained
    on permuted labels instead (`training`, see `permuted_labels`), whose target is its own."""

    dataset: str
    model: str
    index: tuple[int, ...]
    target: str = "prediction"
    perturbation: Perturbation | None = None
    alteration: Alteration | None = None
    training: PermutedLabels | None = None


class MetricContext(Protocol):
    """What `Metric.compute` may use (implemented by the runner)."""

    dataset: Dataset
    dataset_name: str
    model_name: str
    index: np.ndarray
    num_imgs: (
        int  # --num-imgs, or the metric's default: how a metric uses it is its choice (SMERF: per bucket)
    )
    seed: int
    device: str
    batch_size: int

    def load_dataset(self, name: str, split: str = "test") -> Dataset:
        """Dataset `name` of the run (with the metric's dataset options), e.g. to choose images by bucket."""

    def load_model(self, name: str, training: PermutedLabels | None = None) -> torch.nn.Module:
        """Model `name` of the run (trained or loaded as for attributions), in eval mode on the device: for
        metrics that look at the model itself (e.g. BAM's TCAV); with `training`, its twin trained on
        permuted labels."""

    def model_check(self, name: str, training: PermutedLabels | None = None) -> Verification | None:
        """The check of model `name` (with `training`, of its twin on permuted labels) as the run loaded it:
        passed or not and its numbers; None where nothing was checked (weights from a file, a user's
        network)."""

    def explainer_name(self, label: str) -> str:
        """The qualified name (`methods.ig`) behind a result label (`methods.ig:steps=32`)."""

    def rng(self, purpose: str) -> np.random.Generator:
        """A numpy generator derived from the run seed and `purpose` (e.g. "bootstrap")."""

    def attribution_batches(
        self, explainer: str, *, dataset: str | None = None, model: str | None = None, index: Any = None
    ) -> Iterator[tuple[Batch, Stored]]:
        """Dataset samples with their stored attributions, `batch_size` at a time."""

    def stored_batches(
        self,
        explainer: str,
        *,
        dataset: str | None = None,
        model: str | None = None,
        index: Any = None,
        target: str | None = None,
        perturbation: Perturbation | None = None,
        alteration: Alteration | None = None,
        training: PermutedLabels | None = None,
    ) -> Iterator[Stored]:
        """The stored attributions alone, as `attribution_batches` cuts them (no images loaded); `target`
        (the metric's by default), the variants and `training` select maps that a request asked for."""

    def device_batches(self, index: Any = None, *, dataset: str | None = None) -> Iterator[Batch]:
        """Dataset samples `batch_size` at a time (the run's images by default), images on the device: for
        metrics that run the model themselves (faithfulness tests)."""

    def map(self, work: Callable[[Any, Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """`work(ctx, item)` for every item through the run's executor, values in item order: for per-image
        work that dominates a metric (SoCo's sweeps). `work` is a module-level function and `ctx` the
        worker's own context; items carry indices and small arrays (the worker loads images itself)."""


class Metric(ABC):
    """A metric. Subclasses declare:

    - `higher_is_better`, `category` ("ground_truth", "faithfulness", "sanity", ...);
    - `dataset`, `model`: qualified names used by default (`--dataset`/`--model` override them); a metric
      may set them per instance in `__init__` from its options;
    - `requires`: what the dataset must provide, e.g. `("regions",)`;
    - `options`: `Param`s settable as `--name value` after the metric on the command line;
    - `target`: explain the model's "prediction" or the dataset "label";
    - `num_imgs`: how many test images are evaluated by default;
    - `default_explainers`: the explainers run when the user names none (empty: every installed one).
    """

    higher_is_better: ClassVar[bool]
    category: ClassVar[str]
    dataset: ClassVar[str]
    model: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Param, ...]] = ()
    target: ClassVar[str] = "prediction"
    num_imgs: ClassVar[int] = 100
    default_explainers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        self.opts = resolve_params(self.options, options, owner=type(self).__name__)

    def dataset_options(self) -> dict[str, Any]:
        """Options passed to the factory of every dataset the metric uses (e.g. SMERF's background); none by
        default. A model's own `dataset_options` take precedence for the dataset it is trained on."""
        return {}

    def requests(self, ctx: MetricContext) -> list[AttributionRequest]:
        """What to compute before `compute` runs; by default the evaluated images on the default pair."""
        return [AttributionRequest(ctx.dataset_name, ctx.model_name, tuple(map(int, ctx.index)), self.target)]

    @abstractmethod
    def compute(self, ctx: MetricContext, explainer: str) -> Result:
        """Score the attributions of `explainer` (its store label, as given to `attribution_batches`)."""

    def extra_results(self, ctx: MetricContext) -> dict[str, Result]:
        """Results that belong to no explainer (e.g. a validation on synthetic data with known attributions),
        reported beside the explainers' rows under these labels; none by default."""
        return {}
