"""Running a metric: prepare (data, models), plan (what the store lacks), execute (batched attributions),
evaluate (the metric per explainer). No Click in here; the CLI and the Python API both call `run`.

Planning is separate from execution: `plan()` returns `AttributionTask`s (a key, its provenance and the
missing batches), and any executor that writes those batches to the store can replace `execute()`.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribench_core import __version__
from attribench_core.dataset import Batch, Dataset
from attribench_core.errors import AttribenchError, ParameterError, UsageProblem
from attribench_core.executor import Executor, Failed, LocalExecutor, Work, in_order
from attribench_core.explainer import Explainer
from attribench_core.identity import short_hash
from attribench_core.keys import attribution_key, dataset_key, training_data
from attribench_core.metric import TARGETS, AttributionRequest, Metric
from attribench_core.model import Model, Verification, model_info
from attribench_core.model_sources import (
    ModelSource,
    UserModel,
    model_source,
    parse_normalization,
    set_cam_layer,
)
from attribench_core.params import parse_assignments, resolve_params
from attribench_core.permuted_labels import PermutedLabels
from attribench_core.progress import Progress, no_progress
from attribench_core.registry import Entry, Registry
from attribench_core.result import Result, StoredRun, run_arrays
from attribench_core.seeding import check_seed, derive_seed
from attribench_core.store import AttributionStore, GroupKey, Stored
from attribench_core.variants import (
    Alteration,
    Perturbation,
    alteration_generator,
    perturbation_generators,
    variant_identity,
)
from attribench_core.weights import LoadedModel, obtain_model

IMAGE_FOLDER = "core.images"  # the dataset of --images DIR


@dataclass
class RunRequest:
    """Everything `attribench run` was asked; strings as typed, resolved by `prepare`."""

    metric: str
    explainers: list[str] = field(default_factory=list)  # empty: the metric's defaults, else all
    num_imgs: int | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 32
    store: Path = Path("attribench.h5")
    options: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    model: str | None = None  # a registered name, or a user's model (see model_sources)
    weights: Path | None = None
    normalize: str | None = None  # a user's model: imagenet, none, MEAN/STD; None: none or hf's own
    cam_layer: str | None = None  # NAME or NAME:tokens, the run's model's CAM layer
    retrain: bool = False
    compression: str = "none"
    keep_going: bool = True  # an explainer that fails is reported, the others go on
    images: Path | None = None  # your image folder: the run's data is core.images on it
    annotations: Path | None = None  # its regions: COCO .json, or a folder of masks / VOC XML
    size: int | None = None  # its side after resize and centre crop (core.images' default when None)
    executor: str = "core.local"  # where batches are computed (a registered executor)
    workers: int | None = None  # the executor's workers (None: its default)
    gpus_per_worker: float | None = None
    executor_options: dict[str, Any] = field(default_factory=dict)  # its own options (--ray-address ...)


@dataclass
class ExplainerConfig:
    """A resolved explainer with its parameter values; `label` names it in results (`methods.ig:steps=32`)."""

    entry: Entry
    params: dict[str, Any]

    @property
    def label(self) -> str:
        given = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return self.entry.qualified + (f":{given}" if given else "")

    @property
    def resolved(self) -> dict[str, Any]:
        """All parameter values, defaults and values bound at registration included: what the store key
        hashes."""
        declared = self.entry.load().parameters
        bound = {k: v for k, v in self.entry.kwargs.items() if k in {p.name for p in declared}}
        return resolve_params(declared, {**bound, **self.params}, owner=self.entry.qualified)

    def build(self) -> Explainer:
        return self.entry.create(**self.params)


@dataclass
class AttributionTask:
    key: GroupKey
    dataset: str
    model: str
    explainer: ExplainerConfig
    target: str
    batches: list[np.ndarray]
    provenance: dict[str, Any]
    perturbation: Perturbation | None = None
    alteration: Alteration | None = None
    training: PermutedLabels | None = None

    def work(self, index: np.ndarray) -> BatchWork:
        """The unit of work of one of its batches, as an executor sends it to a worker."""
        weights = self.provenance["weights_hash"]
        return BatchWork(
            self.explainer.label,
            self.dataset,
            self.model,
            self.target,
            weights,
            index,
            self.perturbation,
            self.alteration,
            self.training,
        )


@dataclass(frozen=True)
class BatchWork:
    """One attribution batch to compute: names (resolved by the worker's context) and dataset indices."""

    explainer: str  # the label of an explainer of the run
    dataset: str
    model: str
    target: str
    weights_hash: str  # of the driver's model: a worker with other weights refuses
    index: np.ndarray
    perturbation: Perturbation | None = None
    alteration: Alteration | None = None
    training: PermutedLabels | None = None  # the model's twin trained on permuted labels instead


@dataclass
class BatchOutput:
    """A computed attribution batch, as it goes to the store."""

    attribution: np.ndarray
    target: np.ndarray
    prediction: np.ndarray
    diagnostics: dict[str, np.ndarray]
    notes: dict[str, str]


def parse_explainer(registry: Registry, text: str) -> ExplainerConfig:
    """`name` or `name:k=v,k2=v2` -> a resolved explainer whose parameters are validated (made once, so
    that its `check_params` runs too)."""
    name, _, assignments = text.partition(":")
    entry = registry.resolve("explainer", name.strip())
    given = parse_assignments(assignments, owner=entry.qualified)
    values = entry.create(**given).params
    return ExplainerConfig(entry, {k: values[k] for k in given})


class Resources:
    """Datasets and models of one run, loaded once and shared by planning, execution and metrics."""

    def __init__(
        self,
        registry: Registry,
        request: RunRequest,
        progress: Progress,
        default_options: dict[str, Any],
        *,
        train: bool = True,
    ):
        self.registry, self.request, self.progress = registry, request, progress
        self.train = train  # False on a worker: models come from the cache, never trained there
        self._datasets: dict[tuple[str, str], Dataset] = {}
        self._models: dict[tuple[str, PermutedLabels | None], LoadedModel] = {}
        self._user_models: dict[str, tuple[ModelSource, str]] = {}  # name -> (source, dataset)
        self.default_options = default_options  # the metric's dataset options, for every dataset it uses
        self.dataset_options: dict[str, dict[str, Any]] = {}
        self.weights_model: str | None = None  # the run's model (qualified), which --weights replaces
        self._entries: dict[tuple[str, str], Entry] = {}
        self._dataset_keys: dict[tuple[str, str], str] = {}

    def entry(self, kind: str, name: str) -> Entry:
        """The registered `kind` that `name` names, resolved once per run."""
        if (kind, name) not in self._entries:
            self._entries[kind, name] = self.registry.resolve(kind, name)
        return self._entries[kind, name]

    def dataset_key(self, name: str, split: str = "test") -> str:
        """`name@hash` of what determines the data of dataset `name` (qualified; see `keys.dataset_key`)."""
        if (name, split) not in self._dataset_keys:
            version = self.entry("dataset", name).version
            key = dataset_key(name, self.options(name), self.request.seed, split, version)
            self._dataset_keys[name, split] = key
        return self._dataset_keys[name, split]

    def options(self, name: str) -> dict[str, Any]:
        """Options of dataset `name` (qualified): set by its model, else the metric's; with the factory's
        defaults filled in, so that the same data keys the same cache and store entries however a metric
        spells it (`{}` and `{"preset": "default"}` alike)."""
        if name not in self.dataset_options:
            self.dataset_options[name] = _with_defaults(self.entry("dataset", name), self.default_options)
        return self.dataset_options[name]

    def dataset(self, name: str, split: str = "test") -> Dataset:
        entry = self.entry("dataset", name)
        if (entry.qualified, split) not in self._datasets:
            options = self.options(entry.qualified)
            self._datasets[entry.qualified, split] = entry.create(
                split=split, seed=self.request.seed, **options
            )
        return self._datasets[entry.qualified, split]

    def resolve_model(self, spec: str, dataset: str) -> str:
        """Name the run's model once: a registered model's qualified name, or the derived name of the user's
        model that `spec` points to (a file.py/module callable, a TorchScript file or hf:DIR), which is
        then explained on `dataset`. `--weights`, `--normalize` and `--cam-layer` apply to this model."""
        source = model_source(spec)
        if source is None:
            if self.request.normalize is not None:
                raise UsageProblem(
                    "--normalize applies to your own model (--model file.py:callable, a TorchScript file or "
                    f"hf:DIR); registered model {spec} takes its dataset's images as they are."
                )
            name = self.entry("model", spec).qualified
        else:
            name = source.name
            self._user_models[name] = source, dataset
        self.weights_model = name
        return name

    def is_user_model(self, name: str) -> bool:
        """Whether `name` is the user's model (from `resolve_model`), not a registered one."""
        return name in self._user_models

    def model(self, name: str, training: PermutedLabels | None = None) -> LoadedModel:
        """Model `name` loaded once per run (trained, from the cache, a file or built), or with `training`
        its twin trained on permuted labels."""
        key = name if name in self._user_models else self.entry("model", name).qualified
        if (key, training) not in self._models:
            model, data = self._user_model(key) if key in self._user_models else self._registered_model(key)
            loaded = obtain_model(
                model,
                key,
                lambda split: self.dataset(data, split),
                data_key=training_data(data, self.options(data)),
                seed=self.request.seed,
                device=self.request.device,
                weights_file=self.request.weights if key == self.weights_model else None,
                retrain=self.request.retrain,
                train=self.train,
                progress=self.progress,
                training=training,
            )
            if key == self.weights_model and self.request.cam_layer:
                set_cam_layer(loaded.module, self.request.cam_layer)
            self._models[key, training] = loaded
        return self._models[key, training]

    def _registered_model(self, name: str) -> tuple[Model, str]:
        """The registered model `name` and its dataset, whose options the model may set."""
        model = self.entry("model", name).create()
        data = self.entry("dataset", model.dataset)
        if data.qualified not in self.dataset_options:
            given = {**self.default_options, **model.dataset_options}
            self.dataset_options[data.qualified] = _with_defaults(data, given)
        return model, data.qualified

    def _user_model(self, name: str) -> tuple[Model, str]:
        """The user's model `name` on its dataset, probed with that dataset's first test image."""
        source, data = self._user_models[name]
        given = self.request.normalize
        normalization = source.default_normalization() if given is None else parse_normalization(given)
        return UserModel(source, data, normalization, self.dataset(data).batch([0]).images), data

    def model_checks(self) -> list[dict[str, Any]]:
        """Name, source ("cache", "trained", "file", "built"), weights hash, and check (summary numbers,
        passed, the check's table) of every model loaded so far: saved with each run, so a report needs only
        the store."""
        checks = []
        for m in self._models.values():
            check: dict[str, Any] = {"model": m.name, "source": m.source, "weights_hash": m.weights_hash}
            if m.verification is not None:
                check.update(m.verification.summary)
                check.update(passed=m.verification.passed, table=m.verification.table)
            checks.append(check)
        return checks


def _with_defaults(dataset: Entry, options: dict[str, Any]) -> dict[str, Any]:
    """`options` of `dataset` completed with its factory's keyword defaults (besides split, seed and the
    arguments bound at registration, which its qualified name stands for)."""
    fixed = {"split", "seed", *dataset.kwargs}
    parameters = inspect.signature(dataset.load()).parameters.values()
    defaults = {
        p.name: p.default
        for p in parameters
        if p.default is not p.empty and p.kind is not p.VAR_KEYWORD and p.name not in fixed
    }
    return {**defaults, **options}


class RunContext:
    """The `MetricContext` handed to `Metric.compute`."""

    def __init__(
        self,
        resources: Resources,
        store: AttributionStore,
        metric: Metric,
        metric_entry: Entry,
        dataset: str,
        model: str,
        index: np.ndarray,
        explainers: dict[str, ExplainerConfig],
    ):
        self.resources, self.store, self.metric, self.metric_entry = resources, store, metric, metric_entry
        self.dataset_name, self.model_name, self.index = dataset, model, index
        self.explainers = explainers
        request = resources.request
        self.seed, self.device, self.batch_size = request.seed, request.device, request.batch_size
        self.num_imgs = metric.num_imgs if request.num_imgs is None else request.num_imgs
        self.requests: list[AttributionRequest] = []  # the metric's, asked once by `prepare`
        self.executor: Executor = LocalExecutor()  # `run` sets the requested one
        self._explainers: dict[tuple[str, str, str], Explainer] = {}  # built once per (label, data, model)
        self._group_keys: dict[tuple[Any, ...], GroupKey] = {}
        self._altered: dict[
            tuple[str, PermutedLabels | None, Alteration], torch.nn.Module
        ] = {}  # built once per (model, training, alteration)

    @property
    def request(self) -> RunRequest:
        return self.resources.request

    def map(self, work: Work, items: Iterable[Any]) -> Iterator[Any]:
        """`work(ctx, item)` for every item through the run's executor (on workers, each with its own
        context); values in the order of `items`. For a metric's per-image work: `work` is a module-level
        function, items carry indices and small arrays, and the reduction happens on the caller's side."""
        return in_order(self.executor.map(work, items, self))

    def explainer(self, label: str, dataset: str, model: str) -> Explainer:
        """Explainer `label`, built once per (dataset, model) it explains and reused across batches."""
        key = (label, dataset, model)
        if key not in self._explainers:
            self._explainers[key] = self.explainers[label].build()
        return self._explainers[key]

    @property
    def dataset(self) -> Dataset:
        return self.resources.dataset(self.dataset_name)

    def load_dataset(self, name: str, split: str = "test") -> Dataset:
        return self.resources.dataset(name, split)

    def load_model(self, name: str, training: PermutedLabels | None = None) -> torch.nn.Module:
        return self.resources.model(name, training).module

    def model_check(self, name: str, training: PermutedLabels | None = None) -> Verification | None:
        return self.resources.model(name, training).verification

    def explainer_name(self, label: str) -> str:
        return self.explainers[label].entry.qualified

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, "metric", purpose))

    def altered_model(
        self, model: str, alteration: Alteration, training: PermutedLabels | None = None
    ) -> torch.nn.Module:
        """A copy of `model` (or of its twin on permuted labels: `training`), loaded as for attributions,
        altered by `alteration`, built once per run and worker; the run's model itself is never changed."""
        import copy

        if (model, training, alteration) not in self._altered:
            loaded = self.resources.model(model, training)
            module = copy.deepcopy(loaded.module).eval()
            generator = alteration_generator(self.seed, alteration, loaded.weights_hash)
            self._altered[model, training, alteration] = alteration.alter(module, generator).eval()
        return self._altered[model, training, alteration]

    def group_key(
        self,
        dataset: str,
        model: str,
        explainer: ExplainerConfig,
        target: str,
        perturbation: Perturbation | None = None,
        alteration: Alteration | None = None,
        training: PermutedLabels | None = None,
    ) -> GroupKey:
        """Where `explainer`'s attributions of `dataset` on `model` (of a variant, if given; on its twin on
        permuted labels with `training`: the twin's own model key) are stored (`keys.attribution_key`),
        computed once per run."""
        asked = (dataset, model, explainer.label, target, perturbation, alteration, training)
        if asked not in self._group_keys:
            loaded = self.resources.model(model, training)
            base = self.resources.model(model).name
            given = self.request.cam_layer if base == self.resources.weights_model else None
            self._group_keys[asked] = attribution_key(
                self.resources.dataset_key(dataset),
                loaded.key,
                explainer.entry.qualified,
                explainer.resolved,
                target,
                explainer.entry.version,
                given,
                variant_identity(perturbation, alteration),
            )
        return self._group_keys[asked]

    def attribution_batches(
        self, explainer: str, *, dataset: str | None = None, model: str | None = None, index: Any = None
    ) -> Iterator[tuple[Batch, Stored]]:
        data = self.resources.dataset(dataset or self.dataset_name)
        for stored in self.stored_batches(explainer, dataset=dataset, model=model, index=index):
            yield data.batch(stored.index), stored

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
        dataset, model = dataset or self.dataset_name, model or self.model_name
        index = self.index if index is None else np.asarray(index, dtype=np.int64)
        config = self.explainers[explainer]
        target = target or self.metric.target
        key = self.group_key(dataset, model, config, target, perturbation, alteration, training)
        with self.store.reader(key) as reader:  # opened once: each batch is one lookup and its chunks
            for start in range(0, len(index), self.batch_size):
                yield reader.read(index[start : start + self.batch_size])

    def device_batches(self, index: Any = None, *, dataset: str | None = None) -> Iterator[Batch]:
        data = self.resources.dataset(dataset or self.dataset_name)
        index = self.index if index is None else np.asarray(index, dtype=np.int64)
        for start in range(0, len(index), self.batch_size):
            batch = data.batch(index[start : start + self.batch_size])
            yield replace(batch, images=batch.images.to(self.device))


@dataclass
class RunOutcome:
    metric: str
    options: dict[str, Any]
    results: dict[str, Result]
    provenance: dict[str, Any]
    verification: dict[str, Any]  # the default model's: name, source, its check's summary
    computed: int  # attributions computed in this run (0 when everything came from the store)
    models: list[dict[str, Any]] = field(default_factory=list)  # every model the run used, likewise
    higher_is_better: bool | None = None  # the metric's direction, saved so a report needs no plugin
    category: str | None = None  # the metric's category (e.g. "robustness"), saved for the same reason

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "category": self.category,
            "options": self.options,
            "results": [r.to_json(label) for label, r in self.results.items()],
            "provenance": self.provenance,
            "models": self.models,
        }


def sample_index(size: int, num_imgs: int | None, seed: int) -> np.ndarray:
    """`num_imgs` distinct dataset indices (all when None or larger), sorted, chosen by the seed."""
    if num_imgs is not None and num_imgs < 1:
        raise ParameterError(f"--num-imgs must be at least 1; got {num_imgs}.")
    if num_imgs is None or num_imgs >= size:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng(derive_seed(seed, "sample-index"))
    return np.sort(rng.choice(size, size=num_imgs, replace=False)).astype(np.int64)


def prepare(
    registry: Registry, request: RunRequest, progress: Progress = no_progress, *, train: bool = True
) -> RunContext:
    """Resolve names (each once: the context keeps the entries), build the metric, load data and models,
    and choose the evaluated images. `train=False` (a worker): models only from the cache, where the
    driver's `prepare` put them."""
    metric_entry = registry.resolve("metric", request.metric)
    resolve_params(metric_entry.load().options, request.options, owner=metric_entry.qualified, noun="option")
    metric: Metric = metric_entry.create(**request.options)
    if metric.target not in TARGETS:
        raise UsageProblem(
            f"Metric {metric_entry.qualified} declares target '{metric.target}'; use one of {TARGETS}."
        )
    labels = request.explainers or list(metric.default_explainers) or ["all"]
    if "all" in labels:
        configs = [
            ExplainerConfig(e, {}) for e in registry.entries("explainer") if e.meta.get("available", True)
        ]
    else:
        configs = [parse_explainer(registry, text) for text in labels]
    if not configs:
        raise UsageProblem("No explainers are installed; pip install -e plugins/attribench_methods.")
    explainers = {c.label: c for c in configs}
    resources = Resources(registry, request, progress, metric.dataset_options(), train=train)
    # instance attributes: a metric may choose its dataset and model from its options
    image_folder = any(v is not None for v in (request.images, request.annotations, request.size))
    dataset = (
        IMAGE_FOLDER
        if image_folder
        else resources.entry("dataset", request.dataset or metric.dataset).qualified
    )
    model = resources.resolve_model(request.model or metric.model, dataset)
    if image_folder:
        _use_image_folder(request, resources, model)  # checked before any training
    else:
        resources.model(model)  # first: a model may set its dataset's options
    data = resources.dataset(dataset)
    if "regions" in metric.requires and not data.batch([0]).regions:
        hint = "; give them with --annotations PATH" if dataset == IMAGE_FOLDER else ""
        raise UsageProblem(
            f"Metric {metric_entry.qualified} needs ground-truth regions; dataset {dataset} has none{hint}."
        )
    resources.model(model)
    index = sample_index(
        len(data), metric.num_imgs if request.num_imgs is None else request.num_imgs, request.seed
    )
    ctx = RunContext(
        resources,
        AttributionStore(request.store, compression=request.compression),
        metric,
        metric_entry,
        dataset,
        model,
        index,
        explainers,
    )
    ctx.requests = metric.requests(ctx)
    for req in ctx.requests:
        resources.model(req.model, req.training)  # trained here, so that planning has no side effects
    return ctx


def _use_image_folder(request: RunRequest, resources: Resources, model: str) -> None:
    """`--images DIR [--annotations PATH] [--size N]`: the run's data becomes core.images with these
    options, resolved (and the folder fingerprinted) once; the model must be one made for it."""
    from attribench_core.builtin.images import DEFAULT_SIZE, dataset_options

    if request.images is None:
        raise UsageProblem(
            "--annotations and --size describe an image folder; give the folder with --images DIR."
        )
    if request.dataset and resources.entry("dataset", request.dataset).qualified != IMAGE_FOLDER:
        raise UsageProblem(f"--images DIR replaces the dataset; drop --dataset {request.dataset}.")
    if not resources.is_user_model(model):
        made_for = resources.entry("dataset", resources.entry("model", model).create().dataset).qualified
        if made_for != IMAGE_FOLDER:
            raise UsageProblem(
                f"--images needs a model for your images, but {model} is made for {made_for}; pass yours "
                "with --model (file.py:build, model.pt or hf:DIR)."
            )
    options = dataset_options(
        str(request.images), str(request.annotations or ""), request.size or DEFAULT_SIZE
    )
    resources.dataset_options[IMAGE_FOLDER] = _with_defaults(
        resources.entry("dataset", IMAGE_FOLDER), options
    )


def versions(entries: list[Entry]) -> dict[str, str]:
    found = {"attribench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    found.update({e.dist: e.version for e in entries if e.dist and e.version})
    return found


def plan(ctx: RunContext) -> list[AttributionTask]:
    """The attribution batches that the store lacks, for every request of the metric and every explainer
    (reads only: the models were loaded by `prepare`)."""
    tasks = []
    for req in ctx.requests:
        loaded = ctx.resources.model(req.model, req.training)
        for config in ctx.explainers.values():
            key = ctx.group_key(
                req.dataset, req.model, config, req.target, req.perturbation, req.alteration, req.training
            )
            index = np.asarray(req.index, dtype=np.int64)
            missing = set(ctx.store.missing(key, index).tolist())
            # Batches are cut from the full index list, so a resumed run recomputes exactly the same batches.
            batches = [
                b
                for b in np.array_split(index, range(ctx.batch_size, len(index), ctx.batch_size))
                if missing.intersection(b.tolist())
            ]
            if not batches:
                continue
            provenance = {
                "dataset": req.dataset,
                "dataset_options": ctx.resources.options(req.dataset),
                "model": req.model,
                "weights_hash": loaded.weights_hash,
                "cam_layer": model_info(loaded.module).cam_layer,
                "explainer": config.entry.qualified,
                "params": config.resolved,
                "target": req.target,
                **_variant_provenance(req),
                "seed": ctx.seed,
                "batch_size": ctx.batch_size,
                "versions": versions([config.entry]),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            tasks.append(
                AttributionTask(
                    key,
                    req.dataset,
                    req.model,
                    config,
                    req.target,
                    batches,
                    provenance,
                    req.perturbation,
                    req.alteration,
                    req.training,
                )
            )
    return tasks


def _variant_provenance(req: AttributionRequest) -> dict[str, Any]:
    """The variants of a request as its maps' provenance records them (nothing for plain maps)."""
    described = {}
    if req.perturbation is not None:
        described["perturbation"] = req.perturbation.identity()
    if req.alteration is not None:
        described["alteration"] = req.alteration.identity()
    if req.training is not None:
        described["training"] = req.training.identity()
    return described


@dataclass
class Execution:
    """What `execute` did: attributions computed, and explainers that failed (label -> one-line reason)."""

    computed: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def execute(
    ctx: RunContext,
    tasks: list[AttributionTask],
    progress: Progress = no_progress,
    *,
    keep_going: bool = True,
) -> Execution:
    """Compute every task's batches through the run's executor; the driver (this process) journals each
    batch as it arrives and commits a task to the store when its last batch is in.

    With `keep_going`, an explainer that raises is recorded as failed (its remaining batches are not
    started; what it computed before stays in the store) and the others go on; without it, the exception
    propagates. Bad input (`UsageProblem`) always propagates: no explainer can do better.
    """
    done = Execution()
    sent: list[tuple[AttributionTask, BatchWork]] = []  # by position
    remaining = {id(task): len(task.batches) for task in tasks}
    advance = progress("attributions", sum(len(b) for task in tasks for b in task.batches))

    def items() -> Iterator[BatchWork]:
        for task in tasks:
            for index in task.batches:
                if task.explainer.label in done.failures:
                    remaining[id(task)] -= 1
                    continue
                sent.append((task, task.work(index)))
                yield sent[-1][1]

    try:
        for position, outcome in ctx.executor.map(attribute_batch, items(), ctx):
            task, work = sent[position]
            if isinstance(outcome, Failed):
                if isinstance(outcome.error, UsageProblem) or not keep_going:
                    raise outcome.error
                done.failures.setdefault(task.explainer.label, outcome.reason)
            else:
                ctx.store.write_batch(
                    task.key,
                    task.provenance,
                    work.index,
                    outcome.attribution,
                    outcome.target,
                    outcome.prediction,
                    diagnostics=outcome.diagnostics,
                    notes=outcome.notes,
                )
                done.computed += len(outcome.target)
                advance(len(outcome.target))
            remaining[id(task)] -= 1
            if not remaining[id(task)]:
                ctx.store.merge()
    finally:
        ctx.store.merge()
    return done


def attribute_batch(ctx: RunContext, work: BatchWork) -> BatchOutput:
    """Explain one batch (on the context's device); a batch that runs out of device memory is split in two.
    Each batch draws from its own generator (seed, explainer, dataset key, model weights, first index): the
    same maps whatever worker computes it, in whatever order, and independent draws for another model or
    another version of the images, a variant (perturbation, alteration) or a random other target, so that a
    random method is a chance reference in comparisons."""
    loaded = ctx.resources.model(work.model, work.training)
    if loaded.weights_hash != work.weights_hash:
        raise UsageProblem(
            f"This worker's weights of {loaded.name} differ from the driver's ({loaded.weights_hash} vs "
            f"{work.weights_hash}); share ATTRIBENCH_HOME between the machines or copy its models/ folder."
        )
    explainer = ctx.explainer(work.explainer, work.dataset, loaded.name)
    config = ctx.explainers[work.explainer]
    batch = ctx.resources.dataset(work.dataset).batch(work.index)
    inputs = batch.images.to(ctx.device)
    try:
        with torch.no_grad():
            logits = loaded.module(inputs)
        target = _target(ctx.seed, work, logits, batch.labels.to(ctx.device))
        prediction = logits.argmax(1)
        model = loaded.module
        if work.perturbation is not None:
            generators = perturbation_generators(ctx.seed, work.perturbation, work.index)
            inputs = work.perturbation.perturb(inputs, generators)
        if work.alteration is not None:
            model = ctx.altered_model(work.model, work.alteration, work.training)
        if model is not loaded.module or work.perturbation is not None:
            with torch.no_grad():  # the prediction of what is explained: the variant's
                prediction = model(inputs).argmax(1)
        generator = torch.Generator().manual_seed(
            derive_seed(
                ctx.seed,
                "explainer",
                config.entry.qualified,
                ctx.resources.dataset_key(work.dataset),
                work.weights_hash,
                int(work.index[0]),
                *_variant_draws(work),
            )
        )
        references = _reference_images(ctx, work.dataset)
        attribution = explainer(model, inputs, target, generator=generator, references=references)
    except torch.cuda.OutOfMemoryError:
        if len(work.index) == 1:
            raise
        del inputs
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(work.index) // 2
        parts = [attribute_batch(ctx, replace(work, index=i)) for i in (work.index[:half], work.index[half:])]
        return _concatenate(parts)
    return BatchOutput(
        attribution.detach().cpu().numpy(),
        target.cpu().numpy(),
        prediction.cpu().numpy(),
        {name: values.numpy() for name, values in explainer.diagnostics.items()},
        dict(explainer.diagnostic_notes),
    )


def _variant_draws(work: BatchWork) -> tuple[str, ...]:
    """What an explainer's generator adds for maps of a variant or of a random other target (nothing for
    plain maps, whose draws stay as they were)."""
    variant = variant_identity(work.perturbation, work.alteration)
    return (
        *((short_hash(variant),) if variant else ()),
        *(("random_other",) if work.target == "random_other" else ()),
    )


def _target(seed: int, work: BatchWork, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The classes a batch is explained for: the prediction, the label, or (`random_other`) a class drawn
    uniformly among the others than the prediction, per image from the run seed and its dataset index."""
    prediction = logits.argmax(1)
    if work.target == "prediction":
        return prediction
    if work.target == "label":
        return labels
    classes = logits.shape[1]
    if classes < 2:
        raise UsageProblem("Target random_other needs a model with at least two classes.")
    offsets = [
        int(
            torch.randint(
                1,
                classes,
                (1,),
                generator=torch.Generator().manual_seed(derive_seed(seed, "random-other", int(i))),
            )
        )
        for i in work.index
    ]
    return (prediction + torch.tensor(offsets, device=prediction.device)) % classes


def _concatenate(parts: list[BatchOutput]) -> BatchOutput:
    """The output of one batch computed in parts (diagnostics a part lacks are NaN)."""
    names = {name for part in parts for name in part.diagnostics}

    def column(part: BatchOutput, name: str) -> np.ndarray:
        return part.diagnostics.get(name, np.full(len(part.target), np.nan, np.float32))

    return BatchOutput(
        np.concatenate([p.attribution for p in parts]),
        np.concatenate([p.target for p in parts]),
        np.concatenate([p.prediction for p in parts]),
        {name: np.concatenate([column(p, name) for p in parts]) for name in names},
        {k: v for p in parts for k, v in p.notes.items()},
    )


def _reference_images(ctx: RunContext, dataset: str) -> Callable[[int], torch.Tensor]:
    """`n` training images of `dataset`, chosen by the run seed (same n, same images)."""

    def take(n: int) -> torch.Tensor:
        train = ctx.resources.dataset(dataset, "train")
        return train.batch(sample_index(len(train), n, derive_seed(ctx.seed, "references"))).images

    return take


def run(registry: Registry, request: RunRequest, progress: Progress = no_progress) -> RunOutcome:
    """Prepare, plan, execute and evaluate; save the results in the store."""
    if request.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1; got {request.batch_size}.")
    check_seed(request.seed)
    AttributionStore(request.store).check()
    executor = make_executor(registry, request)
    with executor:
        return _run(registry, request, executor, progress)


def make_executor(registry: Registry, request: RunRequest) -> Executor:
    """The executor `request` names, with its workers, GPUs per worker and options (checked here, before
    anything is prepared)."""
    entry = registry.resolve("executor", request.executor)
    return entry.create(
        workers=request.workers, gpus_per_worker=request.gpus_per_worker, **request.executor_options
    )


def _run(registry: Registry, request: RunRequest, executor: Executor, progress: Progress) -> RunOutcome:
    ctx = prepare(registry, request, progress)
    ctx.executor = executor
    ctx.store.check()
    ctx.store.merge()  # adopt batches journalled by an interrupted run
    execution = execute(ctx, plan(ctx), progress, keep_going=request.keep_going)
    if len(execution.failures) == len(ctx.explainers):
        label, reason = next(iter(execution.failures.items()))
        raise AttribenchError(f"Every explainer failed; {label}: {reason}")
    metric_entry = ctx.metric_entry
    advance = progress(f"metric {metric_entry.qualified}", len(ctx.explainers))
    results = {}
    for label in ctx.explainers:
        if label in execution.failures:
            reason = f"explainer failed: {execution.failures[label]}"
            results[label] = Result(value=float("nan"), skipped={reason: len(ctx.index)})
        else:
            results[label] = ctx.metric.compute(ctx, label)
        advance(1)
    for label, result in ctx.metric.extra_results(ctx).items():
        if label in results:
            raise AttribenchError(f"Metric {metric_entry.qualified} reports an extra result '{label}' twice.")
        results[label] = result
    loaded = ctx.resources.model(ctx.model_name)
    provenance = {
        "seed": request.seed,
        "versions": versions([metric_entry, *(c.entry for c in ctx.explainers.values())]),
        "store": str(request.store),
        "group": f"attributions/{ctx.resources.dataset_key(ctx.dataset_name)}/{loaded.key}",
        "dataset": ctx.dataset_name,
        "dataset_source": ctx.dataset.source,
        "model": ctx.model_name,
        "num_imgs": len(ctx.index),
        "device": request.device,
    }
    checks = ctx.resources.model_checks()
    outcome = RunOutcome(
        metric_entry.qualified,
        ctx.metric.opts,
        results,
        provenance,
        next(c for c in checks if c["model"] == ctx.model_name),
        execution.computed,
        checks,
        bool(ctx.metric.higher_is_better),
        ctx.metric.category,
    )
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    ctx.store.merge([StoredRun(metric_entry.qualified, run_id, outcome.to_json(), run_arrays(results))])
    return outcome


_worker_contexts: dict[str, RunContext] = {}


def worker_context(request: RunRequest) -> RunContext:
    """The `RunContext` a worker process computes in, prepared once per run request (datasets and models
    from the cache, which the driver filled in `prepare`)."""
    from attribench_core.plugins import get_registry

    key = json.dumps(asdict(request), sort_keys=True, default=str)
    if key not in _worker_contexts:
        _worker_contexts.clear()  # one run at a time per worker
        # the driver has (re)trained the models already: a worker loads them from the cache, never trains
        _worker_contexts[key] = prepare(get_registry(), replace(request, retrain=False), train=False)
    return _worker_contexts[key]
