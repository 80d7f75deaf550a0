"""What the audit store holds, as Python values: a job's record and its attempts.

The store writes these with Lua (`cancelq/store/lua/`), so their Redis shape is shared with
the scripts. An attempt travels to a script as one JSON object whose fields are
`ATTEMPT_FIELDS`, in that order (`Attempt.encode` in Python, `encode_attempt` in
`lua/lib.lua` for the one attempt Lua makes, an interrupted one); it was stored so in v1.
In v2 it is stored inside the job's record hash, smaller (`add_attempt` in `lua/lib.lua`,
`stored_attempt` here): its numbers and verdict as a JSON array in `ATTEMPT_CORE`
order without trailing nulls, each text (`ATTEMPT_TEXT`) in a field of its own, so each
value stays under Redis's 64-byte listpack limit and the record stays a listpack. The
prelude carries these names into Lua (`cancelq.store.scripts`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cancelq.core.clock import iso_utc
from cancelq.core.lifecycle import BeginVerdict, State
from cancelq.store.codec import decode_float
from cancelq.store.keys import FIELDS


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
#: A stored attempt's JSON array, in this order; trailing nulls left out.
ATTEMPT_CORE: Final = ("number", "started_at", "duration_ms", "http_status", "verdict",
                       "retry_in_seconds")
#: A stored attempt's texts: name -> suffix of its own field (`a3m`: attempt 3's error).
ATTEMPT_TEXT: Final[Mapping[str, str]] = {"error_class": "c", "error": "m", "raw_body": "b",
                                          "worker": "w"}


def stored_attempt(attempt: Attempt, index: int) -> dict[str, str]:
    """The record fields of `attempt` stored as entry `index`: what `add_attempt` in
    `lua/lib.lua` writes for its `encode()` (the migration writes v1 attempts with it)."""
    core = [getattr(attempt, name) for name in ATTEMPT_CORE]
    while core and core[-1] is None:
        core.pop()
    field = f"{FIELDS['attempt']}{index}"
    out = {field: json.dumps(core, separators=(",", ":"))}
    for name, suffix in ATTEMPT_TEXT.items():
        text = getattr(attempt, name)
        if text is not None:
            out[field + suffix] = text
    return out


def read_stored_attempt(raw: Mapping[str, str], index: int) -> Attempt:
    """Entry `index` of a record hash (`stored_attempt`'s fields)."""
    field = f"{FIELDS['attempt']}{index}"
    core = json.loads(raw[field])
    values: dict[str, Any] = dict(zip(ATTEMPT_CORE, core, strict=False))
    for name, suffix in ATTEMPT_TEXT.items():
        values[name] = raw.get(field + suffix)
    return Attempt(
        number=int(values["number"]),
        started_at=float(values["started_at"]),
        duration_ms=values.get("duration_ms"),
        http_status=values.get("http_status"),
        error_class=values["error_class"],
        error=values["error"],
        verdict=values.get("verdict"),
        retry_in_seconds=values.get("retry_in_seconds"),
        raw_body=values["raw_body"],
        worker=values["worker"],
    )


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
    def from_hash(
        cls, job_id: str, raw: Mapping[str, str], *, with_attempts: bool = True
    ) -> JobRecord:
        """A v2 record hash (`cancelq.store.keys.FIELDS`), its attempts inside it."""
        def get(name: str) -> str:
            return raw.get(FIELDS[name], "")

        created = float(get("created_at"))
        settled = decode_float(get("settled_at"))
        entries = int(get("entries") or 0) if with_attempts else 0
        return cls(
            job_id=job_id,
            case_id=get("case_id"),
            event_id=get("event_id"),
            run_id=get("run_id") or None,
            requested_by=get("requested_by") or None,
            reason=get("reason") or None,
            state=State(get("state")),
            outcome=get("outcome") or None,
            attempt_count=int(get("attempts") or 0),
            created_at=created,
            updated_at=decode_float(get("updated_at")) or settled or created,
            settled_at=settled,
            next_attempt_at=decode_float(get("next_attempt_at")),
            queue=get("queue"),
            attempts=tuple(read_stored_attempt(raw, i) for i in range(1, entries + 1)),
        )

    @classmethod
    def from_v1_hash(cls, raw: dict[str, str], attempts: Iterable[str] = ()) -> JobRecord:
        """A v1 record hash (long field names, `job_id` inside) and its attempts list."""
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

