"""One run seed, many independent streams: derive a seed for each purpose from the run seed."""

from __future__ import annotations

import hashlib

from attribench_core.errors import ParameterError

# Run seeds reach numpy (no negative seeds), torch (none above 2**64 - 1, and SoCo's linear test seeds
# torch with seed * 1_000_003 + trial) and HDF5 attributes (int64): 0 .. 2**32 - 1 fits all of them.
MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    """`seed` if it lies in 0 .. MAX_SEED, else a ParameterError saying the supported range."""
    if not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"--seed {seed} is outside the supported range 0 to {MAX_SEED} (2**32 - 1).")
    return seed


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed determined by `seed` and `purpose` (e.g. `("noise", "methods.ig", 128)`)."""
    text = "/".join(map(str, (seed, *purpose)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
