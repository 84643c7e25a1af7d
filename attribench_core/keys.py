"""The identity keys of what is cached and stored, computed here and nowhere else.

The same inputs give the same key, so a run finds what an earlier run cached (trained weights under
`ATTRIBENCH_HOME`) or stored (attributions in the store); anything that changes the outcome (options, seed,
a plugin's version, the weights) changes the key, so that nothing stale is reused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from attribench_core.identity import short_hash
from attribench_core.recipe import Recipe
from attribench_core.store import GroupKey
from attribench_core.training import TRAINING_THREADS


def dataset_key(name: str, options: dict[str, Any], seed: int, split: str, version: str | None) -> str:
    """`name@hash` of a dataset's images: its options (defaults filled in), seed, split and its plugin's
    version."""
    identity = {"options": options, "seed": seed, "split": split, "version": version}
    return f"{name}@{short_hash(identity)}"


def training_data(dataset: str, options: dict[str, Any]) -> dict[str, Any]:
    """What the weights' key says about the data a model trains on (`obtain_model`'s `data_key`): the
    qualified dataset name and its options with the factory's defaults filled in."""
    return {"dataset": dataset, "options": options}


def weights_key(
    name: str,
    module: torch.nn.Module,
    recipe: Recipe,
    data: dict[str, Any],
    seed: int,
    training: dict[str, Any] | None = None,
) -> str:
    """The cache key of trained weights: the model, its architecture and recipe, the training data and
    seed, and what makes training reproducible (torch minor version, thread count); `training`, the
    identity of a training variant (`PermutedLabels`), only when there is one, so that the keys of
    ordinary models stay what they were."""
    identity: dict[str, Any] = {
        "model": name,
        "architecture": repr(module),
        "recipe": dataclasses.asdict(recipe),
        "data": data,
        "seed": seed,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "training_threads": TRAINING_THREADS,
    }
    if training:
        identity["training"] = training
    return short_hash(identity, 16)


def model_key(name: str, weights_hash: str) -> str:
    """`name@hash` of a model with these weights."""
    return f"{name}@{weights_hash[:10]}"


def attribution_key(
    dataset: str,
    model: str,
    explainer: str,
    params: dict[str, Any],
    target: str,
    version: str | None,
    cam_layer: str | None = None,
    variant: dict[str, Any] | None = None,
) -> GroupKey:
    """Where an explainer's attributions of a dataset (`dataset_key`) on a model (`model_key`) are stored:
    its resolved parameters, the target and its plugin's version (a fixed or changed method is recomputed,
    never mixed in), a CAM layer given by the user (it changes CAM methods' maps), and the perturbation of
    the inputs or alteration of the model (`variants.variant_identity`) when the maps are of a variant."""
    identity: dict[str, Any] = {"params": params, "target": target, "version": version}
    if cam_layer:
        identity["cam_layer"] = cam_layer
    if variant:
        identity["variant"] = variant
    return GroupKey(dataset, model, f"{explainer}@{short_hash(identity)}")
