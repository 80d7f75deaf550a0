"""Where workers' heartbeats live: one hash, worker node -> its heartbeat as text.

What a heartbeat says and when one is too old is `cancelq.ops.health`'s; this module only
keeps them, so the hash's name and commands are written once.
"""

from __future__ import annotations

from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text


def put(store: AuditStore, node: str, text: str) -> None:
    store.redis.hset(store.keys.workers, node, text)


def remove(store: AuditStore, *nodes: str) -> int:
    """Drop the nodes' heartbeats; returns how many there were."""
    return int(store.redis.hdel(store.keys.workers, *nodes)) if nodes else 0


def read_all(store: AuditStore) -> dict[str, str | bytes]:
    """Every heartbeat, by node, as stored: its reader decodes it defensively."""
    raw = store.redis.hgetall(store.keys.workers)
    return {decode_text(node): text for node, text in raw.items()}
