"""The shared auth block: one key whose time to live is how long no call may be made.

What sets it and what it means is `cancelq.pipeline.auth_gate`'s; this module only keeps the
key, so that the gate, `cancelq dlq replay` and `cancelq stats` read and clear the same one.
"""

from __future__ import annotations

from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_pttl


def block(store: AuditStore, note: str, seconds: float) -> None:
    """Set the block for `seconds` (at least a millisecond), with a note of who saw the 401."""
    store.redis.set(store.keys.auth_blocked, note, px=max(1, int(seconds * 1000)))


def blocked_for(store: AuditStore) -> float | None:
    """Seconds left on the auth block, or None when calls are allowed."""
    # No TTL (infinity) happens only with a hand-made key: blocked until cleared.
    return decode_pttl(store.redis.pttl(store.keys.auth_blocked))


def clear(store: AuditStore) -> bool:
    """Lift the block (the operator says the key is fixed); True if there was one."""
    return bool(store.redis.delete(store.keys.auth_blocked))
