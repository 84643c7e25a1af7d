"""attribench core: the plugin contract, base types, the attribution store and the runner.

The names below are the public API, the whole of what a plugin may use (`from attribench_core import
Metric`), plus `attribench_core.testing` for its tests; every other module is internal and may change.
docs/plugins.md describes each group; `tests/test_public_api.py` checks that first-party plugins import
nothing else. Names are imported lazily so that `import attribench_core` (and `attribench list`) never pulls
in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "plugin contract": {
        "attribench_core.hookspecs": ("hookimpl",),
        "attribench_core.params": ("Param", "parse_assignments"),
        "attribench_core.errors": ("AttribenchError", "UsageProblem", "ParameterError", "ModelError"),
        "attribench_core.registry": ("Registry",),
    },
    "datasets": {
        "attribench_core.dataset": ("Sample", "Batch", "Dataset", "ArrayDataset", "Roles"),
        "attribench_core.cache": ("cached_arrays", "atomic_path", "home"),
        "attribench_core.seeding": ("derive_seed",),
        "attribench_core.identity": ("short_hash",),
    },
    "models": {
        "attribench_core.model": (
            "Model",
            "ModelInfo",
            "Verification",
            "model_info",
            "cam_layer",
            "cam_layer_path",
            "check_hookable",
        ),
        "attribench_core.recipe": ("Recipe",),
        "attribench_core.normalization": ("Normalize",),
        "attribench_core.model_sources": ("Logits",),
        "attribench_core.training": ("predict",),
        "attribench_core.weights": ("obtain_model",),
        "attribench_core.keys": ("training_data",),
    },
    "explainers and metrics": {
        "attribench_core.explainer": ("Explainer",),
        "attribench_core.metric": ("Metric", "MetricContext", "AttributionRequest"),
        "attribench_core.variants": ("Perturbation", "Alteration", "perturbation_generators"),
        "attribench_core.permuted_labels": ("PermutedLabels",),
        "attribench_core.result": (
            "Result",
            "Curve",
            "Uncertainty",
            "mean_result",
            "bootstrap_ci",
            "bootstrap_interval",
            "wilson_ci",
            "mean_of_rates_ci",
            "ResultTable",
            "json_text",
        ),
    },
    "running": {
        "attribench_core.runner": ("RunRequest", "RunContext", "run", "worker_context"),
        "attribench_core.plugins": ("get_registry",),
        "attribench_core.progress": ("Progress", "RichProgress"),
        "attribench_core.devices": ("check_device",),
        "attribench_core.executor": ("Executor", "Work", "Failed", "attempt"),
    },
    "reports": {
        "attribench_core.result": ("StoredRun",),
        "attribench_core.report.content": (
            "ReportInput",
            "Section",
            "Block",
            "Table",
            "Figure",
            "finite",
            "uncertainty_bounds",
            "model_checks",
            "passed_label",
        ),
        "attribench_core.report.leaderboard": ("Board", "boards", "is_explainer"),
        "attribench_core.report.grouping": ("RunGroup", "group_runs", "newest_group", "differing_options"),
    },
}
# Whole modules in the API: plotting helpers for report figures, and reference architectures.
_MODULES = {
    "figures": "attribench_core.report.figures",
    "reference_models": "attribench_core.reference_models",
}
_EXPORTS = {name: module for group in _GROUPS.values() for module, names in group.items() for name in names}

__all__ = ["__version__", *_EXPORTS, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'attribench_core' has no attribute '{name}'")
