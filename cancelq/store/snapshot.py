"""One moment of the store, read in one pipelined round trip: what `cancelq stats` shows.

The keys read are those the store and kombu keep up to date, never a keyspace scan: the
counters hash, the LLEN of each queue's priority lists, kombu's `unacked` hash, the delayed
set, the oldest entry of `idx:state:queued`, the auth block's TTL, the breaker's hash and the
delayed entries set aside. What they mean is `cancelq.ops.stats`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_counters, decode_hash, decode_text
from cancelq.store.queues import PRIORITY_STEPS, queue_key

#: kombu's Redis transport keeps delivered, not yet acknowledged messages here.
KOMBU_UNACKED_KEY = "unacked"


@dataclass(frozen=True, slots=True)
class Readings:
    """The replies of one snapshot, decoded."""

    now: float  # Redis's clock
    counters: dict[str, int]
    depths: tuple[tuple[str, dict[int, int]], ...]  # (queue, priority step -> ready), in order
    delayed: int
    unacked: int
    oldest_queued: tuple[str, float] | None  # job id, created at
    auth_blocked_pttl: int
    breaker: dict[str, str]
    delayed_bad: int


def read(store: AuditStore, run_id: str | None, queues: Sequence[str]) -> Readings:
    """Every reading of one snapshot, in one round trip (so all of one moment)."""
    keys = store.keys
    pipe = store.redis.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(keys.run_stats(run_id) if run_id else keys.stats)
    for name in queues:
        for step in PRIORITY_STEPS:
            pipe.llen(queue_key(name, step))
    pipe.zcard(keys.delayed)
    pipe.hlen(KOMBU_UNACKED_KEY)
    pipe.zrange(keys.index_state(State.QUEUED.value), 0, 0, withscores=True)
    pipe.pttl(keys.auth_blocked)
    pipe.hgetall(keys.breaker)
    pipe.hlen(keys.delayed_bad)
    replies = iter(pipe.execute())
    seconds, micros = next(replies)
    counters = decode_counters(next(replies))
    depths = tuple(
        (name, {step: int(next(replies)) for step in PRIORITY_STEPS}) for name in queues
    )
    delayed, unacked, oldest = int(next(replies)), int(next(replies)), next(replies)
    return Readings(
        now=int(seconds) + int(micros) / 1_000_000,
        counters=counters,
        depths=depths,
        delayed=delayed,
        unacked=unacked,
        oldest_queued=(decode_text(oldest[0][0]), float(oldest[0][1])) if oldest else None,
        auth_blocked_pttl=int(next(replies)),
        breaker=decode_hash(next(replies)),
        delayed_bad=int(next(replies)),
    )
