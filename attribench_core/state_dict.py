"""Reading a user's weights file (`--weights`) into a network, with errors that name what does not fit."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict")


def load_state_dict_file(module: torch.nn.Module, path: Path) -> None:
    """Load the state dict saved in `path` into `module`: bare, or under one of `STATE_DICT_KEYS` (as
    training checkpoints keep it). A mismatch raises ValueError naming the first missing or unexpected
    key or the first shape that differs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            "the file holds more than tensors (a whole pickled model?); save model.state_dict() instead"
        ) from None
    if isinstance(state, dict):
        state = next((state[k] for k in STATE_DICT_KEYS if isinstance(state.get(k), dict)), state)
    if not isinstance(state, dict):
        raise ValueError(f"the file holds a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    for problem, keys in (
        ("missing key", [k for k in expected if k not in state]),
        ("unexpected key", [k for k in state if k not in expected]),
    ):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise ValueError(f"{problem} '{keys[0]}'{more}")
    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.shape != expected[key].shape:
            model_shape = list(expected[key].shape)
            raise ValueError(
                f"'{key}' has shape {list(tensor.shape)} in the file but {model_shape} in the model"
            )
    module.load_state_dict(state)
