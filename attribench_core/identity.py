"""Stable identities: short content hashes that name cache entries, store groups and generated files."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def short_hash(payload: Any, length: int = 10) -> str:
    """A stable short hash of JSON-serialisable `payload` (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
