"""A live snapshot for `cancelq stats`: one pipelined round trip, no keyspace scan.

Everything is read from keys the store and kombu keep up to date: the counters hash
(jobs per state and outcome, attempts, replays), the queue lists (LLEN of each priority
sub-list), kombu's `unacked` hash (messages a worker holds), the delayed set (retries and
deferrals waiting), the lowest score of `idx:state:queued` (the oldest waiting job, by
created time), the per-second call buckets of the last minute, and the auth block's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, PRIORITY_STEPS, REALTIME_QUEUE, queue_key

QUEUES: tuple[str, ...] = (REALTIME_QUEUE, BULK_QUEUE)
#: kombu's Redis transport keeps delivered, not yet acknowledged messages here.
KOMBU_UNACKED_KEY = "unacked"
CALLS_WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    by_priority: dict[int, int]

    @property
    def ready(self) -> int:
        return sum(self.by_priority.values())


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    run_id: str | None
    jobs: int
    attempts: int
    replays: int
    states: dict[str, int]
    outcomes: dict[str, int]
    queues: tuple[QueueDepth, ...]
    delayed: int
    unacked: int
    oldest_queued_job: str | None
    oldest_queued_age_seconds: float | None
    calls_last_minute: dict[str, int]
    auth_blocked_seconds: float | None

    @property
    def dead_letters(self) -> int:
        return self.states.get(State.DEAD.value, 0)

    @property
    def calls_total(self) -> int:
        return sum(self.calls_last_minute.values())

    def to_json(self) -> dict[str, Any]:
        """The documented `cancelq stats --json` object."""
        return {
            "taken_at": _iso(self.taken_at),
            "run_id": self.run_id,
            "jobs": self.jobs,
            "attempts": self.attempts,
            "replays": self.replays,
            "states": self.states,
            "outcomes": self.outcomes,
            "dead_letters": self.dead_letters,
            "queues": {
                q.name: {"ready": q.ready, "by_priority": {str(p): n for p, n in
                                                           q.by_priority.items()}}
                for q in self.queues
            },
            "delayed": self.delayed,
            "unacked": self.unacked,
            "oldest_queued": None if self.oldest_queued_job is None else {
                "job_id": self.oldest_queued_job,
                "age_seconds": self.oldest_queued_age_seconds,
            },
            "calls_last_minute": {"total": self.calls_total, "by_status": self.calls_last_minute},
            "auth_blocked_seconds": self.auth_blocked_seconds,
        }


def snapshot(
    store: AuditStore, *, run_id: str | None = None, queues: Sequence[str] | None = None
) -> Snapshot:
    """Read the snapshot in one pipeline (plus the call buckets, another one)."""
    queues = store.queues.all if queues is None else queues
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
    replies = iter(pipe.execute())

    seconds, micros = next(replies)
    now = int(seconds) + int(micros) / 1_000_000
    counters = {_s(k): int(v) for k, v in next(replies).items()}
    depths = tuple(
        QueueDepth(name, {step: int(next(replies)) for step in PRIORITY_STEPS}) for name in queues
    )
    delayed = int(next(replies))
    unacked = int(next(replies))
    oldest = next(replies)
    ttl_ms = int(next(replies))

    states = {s.value: counters.get(f"state:{s.value}", 0) for s in State}
    outcomes = {
        name.removeprefix("outcome:"): count
        for name, count in sorted(counters.items())
        if name.startswith("outcome:") and count
    }
    oldest_id, oldest_age = None, None
    if oldest:
        member, score = oldest[0]
        oldest_id, oldest_age = _s(member), round(max(0.0, now - float(score)), 3)
    return Snapshot(
        taken_at=now,
        run_id=run_id,
        jobs=counters.get("jobs", 0),
        attempts=counters.get("attempts", 0),
        replays=counters.get("replays", 0),
        states=states,
        outcomes=outcomes,
        queues=depths,
        delayed=delayed,
        unacked=unacked,
        oldest_queued_job=oldest_id,
        oldest_queued_age_seconds=oldest_age,
        calls_last_minute=dict(sorted(store.calls_last(CALLS_WINDOW_SECONDS).items())),
        auth_blocked_seconds=_blocked_seconds(ttl_ms),
    )


def _blocked_seconds(ttl_ms: int) -> float | None:
    """None: calls allowed. -1: a block without TTL (made by hand) that lasts until cleared."""
    if ttl_ms == -2:
        return None
    if ttl_ms == -1:
        return -1.0
    return ttl_ms / 1000


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
