"""What the audit store holds, as Python values: a job's record and its attempts.

The store writes these with Lua (`cancelq/store/lua/`), so their Redis shape is shared with
the scripts: an attempt is one JSON object whose fields are `ATTEMPT_FIELDS`, in that order;
`Attempt.encode` writes it in Python and `encode_attempt` in `lua/lib.lua` writes the one
attempt Lua makes (an interrupted one), from the same list, which the script prelude
carries (`cancelq.store.scripts`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from cancelq.core.clock import iso_utc
from cancelq.core.lifecycle import BeginVerdict, State
from cancelq.store.codec import decode_float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to Care360 (number >= 1), or a note of why a job ended without one (0)."""

    number: int
    started_at: float
    duration_ms: float | None
    http_status: int | None
    error_class: str | None
    error: str | None
    verdict: str | None = None
    retry_in_seconds: float | None = None
    raw_body: str | None = None
    #: the worker process that made the call ("host:pid"); None on notes and older attempts
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": iso_utc(self.started_at),
            "duration_ms": self.duration_ms,
            "http_status": self.http_status,
            "error": self.error,
            "error_class": self.error_class,
            "verdict": self.verdict,
            "retry_in_seconds": self.retry_in_seconds,
            "worker": self.worker,
        }

    def encode(self) -> str:
        """The JSON object of `ATTEMPT_FIELDS`; an optional field left out when None."""
        raw = {
            name: getattr(self, name)
            for name in ATTEMPT_FIELDS
            if name not in ATTEMPT_OPTIONAL or getattr(self, name) is not None
        }
        return json.dumps(raw, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> Attempt:
        raw = json.loads(text)
        return cls(
            number=int(raw["number"]),
            started_at=float(raw["started_at"]),
            duration_ms=raw.get("duration_ms"),
            http_status=raw.get("http_status"),
            error_class=raw.get("error_class"),
            error=raw.get("error"),
            verdict=raw.get("verdict"),
            retry_in_seconds=raw.get("retry_in_seconds"),
            raw_body=raw.get("raw_body"),
            worker=raw.get("worker"),
        )


#: The fields of an attempt's JSON object, in the order both languages write them.
ATTEMPT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Attempt))
#: Left out of the JSON when None (a raw body is kept only for some outcomes; notes have no
#: worker, nor do attempts recorded before it was); others are null.
ATTEMPT_OPTIONAL: Final = frozenset({"raw_body", "worker"})


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    case_id: str
    event_id: str
    run_id: str | None
    requested_by: str | None
    reason: str | None
    state: State
    outcome: str | None
    attempt_count: int
    created_at: float
    updated_at: float
    settled_at: float | None
    next_attempt_at: float | None
    queue: str
    attempts: tuple[Attempt, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The documented, stable `--json` schema of a job."""
        return {
            "job_id": self.job_id,
            "case_id": self.case_id,
            "event_id": self.event_id,
            "run_id": self.run_id,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "state": self.state.value,
            "outcome": self.outcome,
            "attempt_count": self.attempt_count,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
            "settled_at": iso_utc(self.settled_at),
            "next_attempt_at": iso_utc(self.next_attempt_at),
            "queue": self.queue,
            "attempts": [attempt.to_json() for attempt in self.attempts],
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str], attempts: Iterable[str] = ()) -> JobRecord:
        return cls(
            job_id=raw["job_id"],
            case_id=raw.get("case_id", ""),
            event_id=raw.get("event_id", ""),
            run_id=raw.get("run_id") or None,
            requested_by=raw.get("requested_by") or None,
            reason=raw.get("reason") or None,
            state=State(raw["state"]),
            outcome=raw.get("outcome") or None,
            attempt_count=int(raw.get("attempts") or 0),
            created_at=float(raw["created_at"]),
            updated_at=float(raw.get("updated_at") or raw["created_at"]),
            settled_at=decode_float(raw.get("settled_at")),
            next_attempt_at=decode_float(raw.get("next_attempt_at")),
            queue=raw.get("queue", ""),
            attempts=tuple(Attempt.decode(a) for a in attempts),
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What `enqueue` did. `refused`: nothing was made because `--force` met a live job
    ('force'), or the job id given belongs to another (case, event) ('job_id')."""

    job_id: str
    duplicate: bool
    state: State
    refused: str = ""


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` decided: run attempt `attempt`, or don't call at all."""

    verdict: BeginVerdict
    attempt: int
    state: str | None = None
    outcome: str | None = None
    #: attempts counted against the budget (a failed breaker probe is not), for `run`
    used: int = 0
    #: for `leased`: seconds left on the other copy's lease
    lease_left: float = 0.0
    #: for `conflict`: the job the rejected message was recorded on
    rejected_job: str | None = None
    #: for `duplicate`: the pair's live job the message repeats
    live_job: str | None = None
    #: for `not_due`: seconds until the job's delayed entry is due
    due_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Replayed:
    """What `replay` did: `applied` False means refused (the job is `state`, not dead)."""

    job_id: str
    applied: bool
    state: str
    replays: int
    #: refused because this live job now holds the (case, event) pair ('' otherwise)
    pair_holder: str = ""


@dataclass(frozen=True, slots=True)
class Query:
    case_id: str | None = None
    event_id: str | None = None
    run_id: str | None = None
    outcome: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50

