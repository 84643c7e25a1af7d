"""attribench core: the plugin contract, base types, the attribution store and the runner.

Names are imported lazily so that `import attribench_core` (and `attribench list`) never pulls in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "attribench_core.hookspecs",
    "Param": "attribench_core.params",
    "Sample": "attribench_core.dataset",
    "Batch": "attribench_core.dataset",
    "Dataset": "attribench_core.dataset",
    "ArrayDataset": "attribench_core.dataset",
    "Model": "attribench_core.model",
    "ModelInfo": "attribench_core.model",
    "Recipe": "attribench_core.model",
    "Verification": "attribench_core.model",
    "model_info": "attribench_core.model",
    "Explainer": "attribench_core.explainer",
    "Metric": "attribench_core.metric",
    "MetricContext": "attribench_core.metric",
    "Result": "attribench_core.result",
    "Curve": "attribench_core.result",
    "Uncertainty": "attribench_core.result",
    "mean_result": "attribench_core.result",
    "bootstrap_ci": "attribench_core.result",
    "bootstrap_interval": "attribench_core.result",
    "wilson_ci": "attribench_core.result",
    "mean_of_rates_ci": "attribench_core.result",
    "get_registry": "attribench_core.plugins",
    "AttribenchError": "attribench_core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'attribench_core' has no attribute '{name}'")
