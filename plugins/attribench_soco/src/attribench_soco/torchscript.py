"""`soco.torchscript`: a user's classifier saved as TorchScript, evaluated on their image folder
(`core.images`, given with `--images DIR`). It receives the folder's [0,1] images, so any input
normalisation must be part of the scripted module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attribench_core.errors import ModelError
from attribench_core.model import Model


class TorchScriptModel(Model):
    """A user's classifier saved as TorchScript, given with `--weights FILE`; it takes `[B,3,H,W]` images in
    [0,1] (normalisation inside the module) and returns logits `[B, classes]` in the folder's class order."""

    dataset = "core.images"
    recipe = None

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        raise ModelError(
            "soco.torchscript is read from a file; pass your TorchScript model with --weights FILE."
        )

    def from_file(self, path: Path, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """Load the TorchScript module and check that one image gives `num_classes` logits."""
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise ModelError(
                f"'{path}' is not a TorchScript model; save yours with torch.jit.script(model).save(path) "
                "or torch.jit.trace(model, images).save(path)."
            ) from None
        module.eval()
        shape = "x".join(map(str, image_shape))
        try:
            with torch.no_grad():
                logits = module(torch.zeros(1, *image_shape))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"The model in '{path}' fails on a {shape} image: {first}") from None
        if not isinstance(logits, torch.Tensor) or logits.shape[:1] != (1,) or logits.dim() != 2:
            got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelError(f"The model in '{path}' returns {got} for one {shape} image, not logits [1, K].")
        if logits.shape[1] != num_classes:
            raise ModelError(
                f"The model in '{path}' gives {logits.shape[1]} logits per image but the image folder has "
                f"{num_classes} classes; list the model's classes, in its output order, in classes.txt."
            )
        return module
