"""One run seed, many independent streams: derive a seed for each purpose from the run seed."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed determined by `seed` and `purpose` (e.g. `("noise", "methods.ig", 128)`)."""
    text = "/".join(map(str, (seed, *purpose)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
