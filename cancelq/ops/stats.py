"""A live snapshot for `cancelq stats`: one pipelined round trip, no keyspace scan.

Everything is read from keys the store and kombu keep up to date (`cancelq.store.snapshot`
reads them): the counters hash (jobs per state and outcome, attempts, replays), the queue
lists (LLEN of each priority sub-list), kombu's `unacked` hash (messages a worker holds),
the delayed set (retries and deferrals waiting), the lowest score of `idx:state:queued` (the
oldest waiting job, by created time), the auth block's TTL, the circuit breaker's hash and
the delayed entries set aside as bad; then the per-second call buckets of the last minute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cancelq.core.clock import iso_utc
from cancelq.core.lifecycle import BreakerState, State
from cancelq.store import snapshot as snapshot_readings
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_float, decode_pttl

CALLS_WINDOW_SECONDS = 60
#: `auth_blocked_seconds` of a block without a TTL (made by hand): it lasts until cleared.
BLOCKED_UNTIL_CLEARED = -1.0


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    by_priority: dict[int, int]

    @property
    def ready(self) -> int:
        return sum(self.by_priority.values())


@dataclass(frozen=True, slots=True)
class BreakerView:
    """The shared circuit breaker as `{prefix}:breaker` holds it (`cancelq.pipeline.breaker`)."""

    state: str
    opened_at: float | None
    failures: int

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> BreakerView:
        return cls(
            state=raw.get("state") or BreakerState.CLOSED.value,
            opened_at=decode_float(raw.get("opened_at")),
            failures=int(raw.get("failures") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "opened_at": iso_utc(self.opened_at),
                "consecutive_failures": self.failures}


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
    breaker: BreakerView
    delayed_bad: int

    @property
    def dead_letters(self) -> int:
        return self.states.get(State.DEAD.value, 0)

    @property
    def calls_total(self) -> int:
        return sum(self.calls_last_minute.values())

    def to_json(self) -> dict[str, Any]:
        """The documented `cancelq stats --json` object."""
        return {
            "taken_at": iso_utc(self.taken_at),
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
            "breaker": self.breaker.to_json(),
            "delayed_bad": self.delayed_bad,
        }


def snapshot(
    store: AuditStore, *, run_id: str | None = None, queues: Sequence[str] | None = None
) -> Snapshot:
    """Read the snapshot in one pipeline (plus the call buckets, another one)."""
    queues = store.queues.all if queues is None else queues
    got = snapshot_readings.read(store, run_id, queues)
    now, counters = got.now, got.counters
    oldest_id, oldest_age = (None, None) if got.oldest_queued is None else (
        got.oldest_queued[0], round(max(0.0, now - got.oldest_queued[1]), 3))
    return Snapshot(
        taken_at=now,
        run_id=run_id,
        jobs=counters.get("jobs", 0),
        attempts=counters.get("attempts", 0),
        replays=counters.get("replays", 0),
        states={s.value: counters.get(f"state:{s.value}", 0) for s in State},
        outcomes=_outcomes(counters),
        queues=tuple(QueueDepth(name, depth) for name, depth in got.depths),
        delayed=got.delayed,
        unacked=got.unacked,
        oldest_queued_job=oldest_id,
        oldest_queued_age_seconds=oldest_age,
        calls_last_minute=dict(sorted(store.calls_last(CALLS_WINDOW_SECONDS).items())),
        auth_blocked_seconds=_blocked_seconds(got.auth_blocked_pttl),
        breaker=BreakerView.from_hash(got.breaker),
        delayed_bad=got.delayed_bad,
    )


def _outcomes(counters: dict[str, int]) -> dict[str, int]:
    """The non-zero `outcome:*` counters, by outcome name, sorted."""
    return {
        name.removeprefix("outcome:"): count
        for name, count in sorted(counters.items())
        if name.startswith("outcome:") and count
    }


def _blocked_seconds(ttl_ms: int) -> float | None:
    """None: calls allowed. -1: a block without TTL (made by hand) that lasts until cleared.

    -1 and not infinity, because the JSON output cannot carry infinity.
    """
    left = decode_pttl(ttl_ms)
    return BLOCKED_UNTIL_CLEARED if left == math.inf else left


#: The web console's chart: calls per minute over the last hour (the minute buckets live 65).
CHART_MINUTES = 60


@dataclass(frozen=True, slots=True)
class MinuteCalls:
    """Care360 calls made in one minute (Redis's clock), by HTTP status ('none': no answer)."""

    started_at: float
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def to_json(self) -> dict[str, Any]:
        return {"minute": iso_utc(self.started_at), "total": self.total,
                "by_status": dict(sorted(self.by_status.items()))}


def calls_per_minute(store: AuditStore, minutes: int = CHART_MINUTES) -> list[MinuteCalls]:
    """The last `minutes` minutes, oldest first, the current (partial) minute last."""
    return [MinuteCalls(float(minute * 60), counts)
            for minute, counts in store.calls_by_minute(minutes)]
