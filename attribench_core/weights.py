"""Obtaining a model's weights: from a user's file, or trained with the model's recipe and cached.

Trained weights live in `ATTRIBENCH_HOME/models/<model>/<key>.pt`, where the key hashes the architecture,
the recipe, the training data (dataset, options, seed) and the torch minor version. A weights file that
fails to load is retrained; an interrupted training resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attribench_core.cache import atomic_path, building, home
from attribench_core.dataset import Dataset
from attribench_core.errors import ModelError, UsageProblem
from attribench_core.keys import model_key, weights_key
from attribench_core.model import Model, ModelInfo, Verification, attach_info
from attribench_core.permuted_labels import PermutedLabels, PermutedLabelsDataset, twin_check
from attribench_core.progress import Progress, no_progress
from attribench_core.seeding import derive_seed
from attribench_core.training import fixed_threads


@dataclass
class LoadedModel:
    name: str
    module: torch.nn.Module
    weights_hash: str
    source: str  # "cache", "trained", "file" or "built" (a user's network with its own weights)
    verification: Verification | None = None

    @property
    def key(self) -> str:
        return model_key(self.name, self.weights_hash)


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 of the parameters and buffers; for a TorchScript module, of its whole serialised form too,
    since its code and plain attributes (normalisation constants, say) change its outputs as well."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for scripted in _outermost_scripts(module):
        serialised = io.BytesIO()
        torch.jit.save(scripted, serialised)
        digest.update(serialised.getvalue())
    return digest.hexdigest()


def _outermost_scripts(module: torch.nn.Module) -> list[torch.jit.ScriptModule]:
    """The TorchScript modules in `module` (itself, or inside wrappers such as `Normalized`), not nested."""
    if isinstance(module, torch.jit.ScriptModule):
        return [module]
    return [s for child in module.children() for s in _outermost_scripts(child)]


def obtain_model(
    model: Model,
    name: str,
    datasets: Callable[[str], Dataset],
    *,
    data_key: dict[str, Any],
    seed: int,
    device: str = "cpu",
    weights_file: Path | None = None,
    retrain: bool = False,
    train: bool = True,
    progress: Progress = no_progress,
    training: PermutedLabels | None = None,
) -> LoadedModel:
    """Build `model` and give it weights; `datasets(split)` returns its train/test data, which `data_key`
    identifies (`keys.training_data`). `train=False` (a worker of a distributed executor): trained weights
    only from the cache, never trained here. `training`: the model's twin trained on permuted labels
    instead (`permuted_labels`), named `training.twin_name(name)`, whose failed check is recorded, not
    raised."""
    test_set = datasets("test")
    shape = test_set.num_classes, test_set.image_shape
    if training is not None:
        _check_twin_trainable(model, name, weights_file)
        twin = _twin_model(model, training)
        loaded = _from_cache_or_training(
            twin,
            twin.build(*shape),
            training.twin_name(name),
            _permuted_training_set(datasets, training, seed),
            data_key,
            seed,
            device,
            retrain,
            train,
            progress,
            training,
        )
    elif weights_file is not None:
        loaded = _from_file(model, weights_file, name, *shape)
    elif model.built_with_weights:
        module = model.build(*shape)
        loaded = LoadedModel(name, module, weights_hash(module), "built")
    elif model.recipe is None:
        raise ModelError(f"Model {name} has no training recipe here; pass its weights with --weights FILE.")
    else:
        loaded = _from_cache_or_training(
            model, model.build(*shape), name, datasets, data_key, seed, device, retrain, train, progress
        )
    info = ModelInfo(
        loaded.name, test_set.value_range, test_set.num_classes, model.cam_layer, loaded.weights_hash
    )
    attach_info(loaded.module.to(device).eval(), info)
    return loaded


def _check_twin_trainable(model: Model, name: str, weights_file: Path | None) -> None:
    """A `UsageProblem` when attribench does not train `model`, so cannot train its random-label twin by
    the same recipe."""
    if model.built_with_weights:
        raise UsageProblem(
            f"Model {name} brings its own weights and is never trained here, so its twin on permuted labels "
            "cannot be trained by the same recipe; run this check on a registered model with a training "
            "recipe (attribench list models)."
        )
    if weights_file is not None:
        raise UsageProblem(
            f"Model {name} takes its weights from --weights, so its twin on permuted labels would not share "
            "its training; drop --weights to train both here by the model's recipe."
        )
    if model.recipe is None:
        raise UsageProblem(
            f"Model {name} has no training recipe, so its twin on permuted labels cannot be trained here; "
            "run this check on a model with one (attribench list models)."
        )


def _twin_model(model: Model, training: PermutedLabels) -> Model:
    """`model` with its recipe adapted by `training` (a shallow copy: `fit` trains by it)."""
    assert model.recipe is not None
    twin = copy.copy(model)
    twin.recipe = training.recipe(model.recipe)  # type: ignore[misc]
    return twin


def _permuted_training_set(
    datasets: Callable[[str], Dataset], training: PermutedLabels, seed: int
) -> Callable[[str], Dataset]:
    """`datasets` whose training split carries permuted labels (built once)."""

    @functools.cache
    def split(name: str) -> Dataset:
        if name != "train":
            return datasets(name)
        base = datasets("train")
        return PermutedLabelsDataset(base, training.permutation(len(base), seed))

    return split


def _from_file(
    model: Model, path: Path, name: str, num_classes: int, image_shape: tuple[int, int, int]
) -> LoadedModel:
    if not path.is_file():
        raise ModelError(f"Weights file '{path}' does not exist.")
    try:
        module = model.from_file(path, num_classes, image_shape)
    except ModelError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"Weights in '{path}' do not fit model {name}: {first}") from None
    return LoadedModel(name, module, weights_hash(module), "file")


def _from_cache_or_training(
    model: Model,
    module: torch.nn.Module,
    name: str,
    datasets: Callable[[str], Dataset],
    data_key: dict[str, Any],
    seed: int,
    device: str,
    retrain: bool,
    train: bool,
    progress: Progress,
    training: PermutedLabels | None = None,
) -> LoadedModel:
    assert model.recipe is not None
    identity = training.identity() if training is not None else None
    key = weights_key(name, module, model.recipe, data_key, seed, identity)
    folder = home() / "models" / name
    weights, record = folder / f"{key}.pt", folder / f"{key}.json"
    cached = None if retrain else _cached(module, name, weights, record)
    if cached is not None:
        return cached
    if not train:
        raise UsageProblem(
            f"Model {name} is not in this worker's cache ({folder}); share ATTRIBENCH_HOME with the driver "
            "or fill this machine's by running the same command once on it."
        )
    with building(weights):  # one process trains; the others wait and load its weights
        cached = None if retrain else _cached(module, name, weights, record)
        if cached is not None:
            return cached
        return _train(model, name, datasets, seed, device, retrain, progress, folder, key, training)


def _cached(module: torch.nn.Module, name: str, weights: Path, record: Path) -> LoadedModel | None:
    """The cached weights of `name` loaded into `module`, or None when absent or unreadable (retrain)."""
    if not (weights.exists() and record.exists()):
        return None
    try:
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        meta = json.loads(record.read_text())
        return LoadedModel(name, module, meta["weights_hash"], "cache", Verification(**meta["verification"]))
    except Exception:
        return None


def _train(
    model: Model,
    name: str,
    datasets: Callable[[str], Dataset],
    seed: int,
    device: str,
    retrain: bool,
    progress: Progress,
    folder: Path,
    key: str,
    training: PermutedLabels | None = None,
) -> LoadedModel:
    """Train `model` with its recipe (attempts until its check passes) and cache the weights under `key`;
    a random-label twin (`training`) is cached with its check, passed or not."""
    assert model.recipe is not None
    weights, record = folder / f"{key}.pt", folder / f"{key}.json"
    train_set, test_set = datasets("train"), datasets("test")
    verification = None
    started = time.perf_counter()
    for attempt in range(model.recipe.max_attempts):
        checkpoint = folder / f"{key}.attempt{attempt}.ckpt"
        if retrain:
            checkpoint.unlink(missing_ok=True)
        torch.manual_seed(derive_seed(seed, "init", name, attempt))
        module = model.build(test_set.num_classes, test_set.image_shape)
        with fixed_threads(device):
            model.fit(
                module,
                train_set,
                validation=test_set,
                seed=derive_seed(seed, "train", name, attempt),
                device=device,
                checkpoint=checkpoint,
                progress=progress,
            )
            if training is not None:
                verification = twin_check(module, train_set, test_set, device=device)
            else:
                verification = model.verify(module, test_set, device=device)
        checkpoint.unlink(missing_ok=True)
        if verification.passed:
            break
    assert verification is not None
    if not verification.passed and training is None:
        raise ModelError(
            f"Model {name} failed its check after {model.recipe.max_attempts} attempt(s): "
            f"{verification.message}."
        )
    module = module.cpu()
    digest = weights_hash(module)
    tmp = atomic_path(weights)
    torch.save(module.state_dict(), tmp)
    os.replace(tmp, weights)
    tmp = atomic_path(record)
    history = {"seconds": round(time.perf_counter() - started, 1), "attempts": attempt + 1, "device": device}
    meta = {"weights_hash": digest, "verification": dataclasses.asdict(verification), "training": history}
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, record)
    return LoadedModel(name, module, digest, "trained", verification)
