"""Decoding what Redis answers: text, optional floats, counter hashes and TTLs, one rule each.

The store's own clients are made with `decode_responses=True`, but not every client is:
tests hand the store a plain fakeredis, and a pipeline's replies are whatever its client
decodes. So every reader of a Redis reply goes through these few functions, and a rule (what
an empty field means, what PTTL's negative answers mean) is written once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: PTTL's answer for a key that does not exist.
PTTL_NO_KEY = -2
#: PTTL's answer for a key that exists without a time to live (it lasts until deleted).
PTTL_NO_EXPIRY = -1


def decode_text(value: object) -> str:
    """A reply as text, whether the client decoded it (str) or not (bytes, UTF-8)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An HGETALL reply with text keys and values."""
    return {decode_text(k): decode_text(v) for k, v in raw.items()}


def decode_counters(raw: Mapping[Any, Any]) -> dict[str, int]:
    """An HGETALL reply of a counters hash (HINCRBY fields): text keys, integer values."""
    return {decode_text(k): int(v) for k, v in raw.items()}


def decode_float(value: str | None) -> float | None:
    """A float field of a hash; a missing or empty field is None (not yet set)."""
    return float(value) if value else None


def decode_pttl(ttl_ms: int | str | bytes) -> float | None:
    """PTTL's reply in seconds: None when the key is gone, `math.inf` when it never expires."""
    ms = int(ttl_ms)
    if ms == PTTL_NO_KEY:
        return None
    if ms == PTTL_NO_EXPIRY:
        return math.inf
    return ms / 1000
