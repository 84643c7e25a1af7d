"""Device names as users type them (`cpu`, `cuda`, `cuda:N`), checked before any work starts."""

from __future__ import annotations

from attribench_core.errors import UsageProblem


def check_device(device: str) -> None:
    """A one-line error unless `device` is cpu, or a CUDA device torch can see."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise UsageProblem(f"Unknown device '{device}'; use cpu, cuda or cuda:N.")
    import torch

    if not torch.cuda.is_available():
        raise UsageProblem(
            f"Device '{device}' was asked for but torch sees no CUDA device; use --device cpu."
        )
