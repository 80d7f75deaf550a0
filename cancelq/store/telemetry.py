"""The workers' shared call counts: one hash of counters, added to by every worker.

Each worker counts its calls and gate verdicts in memory and adds them here on each
heartbeat (`worker.telemetry`); `cancelq metrics` reads the sums. What is counted is
`cancelq.ops.metrics`'s; this module only keeps the hash.
"""

from __future__ import annotations

from collections.abc import Mapping

from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_hash


def add_counts(store: AuditStore, counts: Mapping[str, int]) -> None:
    """Add every count in one transaction: all of them are added, or none."""
    pipe = store.redis.pipeline(transaction=True)
    for field, count in counts.items():
        pipe.hincrby(store.keys.telemetry, field, count)
    pipe.execute()


def read_counts(store: AuditStore) -> dict[str, str]:
    """The sums so far, by field, as text."""
    return decode_hash(store.redis.hgetall(store.keys.telemetry))


def bulk_turns_booked_until(store: AuditStore) -> float | None:
    """Until when the rate limit has booked deferred bulk turns (`lua/reserve_slot.lua`)."""
    booked = store.redis.get(store.keys.bulk_turns)
    return float(booked) if booked else None
