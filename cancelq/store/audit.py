"""The audit store: every job and every attempt, in Redis, queryable without a scan.

Every change of a job is one Lua script (`cancelq/store/lua/*.lua`), so counters, indexes, the
record and the broker queue can never disagree: enqueue records the job and pushes its
message in one step; finish appends the attempt and settles, dead-letters or schedules the
retry in one step; a second finish for the same attempt changes nothing. The key layout
is in `cancelq.store.keys`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any, Literal

import redis

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Decision, State
from cancelq.core.settings import Settings
from cancelq.store.connections import redis_client
from cancelq.store.keys import Keys
from cancelq.store.messages import TaskMessage
from cancelq.store.queues import Queues


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: float
    duration_ms: float | None
    http_status: int | None
    error_class: str | None
    error: str | None
    verdict: str | None = None
    retry_in_seconds: float | None = None
    raw_body: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": _iso(self.started_at),
            "duration_ms": self.duration_ms,
            "http_status": self.http_status,
            "error": self.error,
            "error_class": self.error_class,
            "verdict": self.verdict,
            "retry_in_seconds": self.retry_in_seconds,
        }

    def encode(self) -> str:
        raw = {
            "number": self.number,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "http_status": self.http_status,
            "error_class": self.error_class,
            "error": self.error,
            "verdict": self.verdict,
            "retry_in_seconds": self.retry_in_seconds,
        }
        if self.raw_body is not None:
            raw["raw_body"] = self.raw_body
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
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "settled_at": _iso(self.settled_at),
            "next_attempt_at": _iso(self.next_attempt_at),
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
            settled_at=_float(raw.get("settled_at")),
            next_attempt_at=_float(raw.get("next_attempt_at")),
            queue=raw.get("queue", ""),
            attempts=tuple(Attempt.decode(a) for a in attempts),
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    duplicate: bool
    state: State


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` decided: run attempt `attempt`, or don't call at all."""

    verdict: Literal["run", "settled", "exhausted"]
    attempt: int
    state: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What `replay` did: `applied` False means refused (the job is `state`, not dead)."""

    job_id: str
    applied: bool
    state: str
    replays: int


@dataclass(frozen=True, slots=True)
class Query:
    case_id: str | None = None
    event_id: str | None = None
    run_id: str | None = None
    outcome: str | None = None
    state: str | None = None
    since: float | None = None
    limit: int = 50


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _delayed_entry(message: TaskMessage) -> str:
    return f"{message.queue_key}\n{message.payload}"


def script_source(name: str) -> str:
    """A script of `cancelq/store/lua/`, with the shared functions of `lib.lua` in front."""
    lua = resources.files("cancelq.store").joinpath("lua")
    return lua.joinpath("lib.lua").read_text(encoding="utf-8") + lua.joinpath(
        f"{name}.lua"
    ).read_text(encoding="utf-8")


class AuditStore:
    """Typed access to the audit keys; safe to share between threads (redis-py pools)."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, queues: Queues | None = None
    ) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.queues = queues or Queues()  # this deployment's broker queue names
        self._enqueue = client.register_script(script_source("enqueue"))
        self._begin = client.register_script(script_source("begin"))
        self._finish = client.register_script(script_source("finish"))
        self._promote = client.register_script(script_source("promote"))
        self._defer = client.register_script(script_source("defer"))

    # -- writes ---------------------------------------------------------------------------

    def enqueue(
        self,
        job_id: str,
        request: CancelRequest,
        message: TaskMessage,
        *,
        queue: str,
        force: bool = False,
        now: float | None = None,
        pipe: redis.client.Pipeline | None = None,
    ) -> Enqueued | None:
        """Record and push, or find the live job for this pair. In a pipeline, returns None."""
        args = [
            self.keys.prefix,
            job_id,
            request.case_id,
            request.event_id,
            request.run_id or "",
            request.requested_by or "",
            request.reason or "",
            repr(now if now is not None else time.time()),
            "1" if force else "0",
            queue,
            message.queue_key,
            message.payload,
        ]
        if pipe is not None:
            self._enqueue(args=args, client=pipe)
            return None
        return self.parse_enqueued(self._enqueue(args=args))

    @staticmethod
    def parse_enqueued(reply: Sequence[Any]) -> Enqueued:
        created, job_id, state = reply
        return Enqueued(job_id=_s(job_id), duplicate=not int(created), state=State(_s(state)))

    def begin(
        self,
        job_id: str,
        request: CancelRequest,
        *,
        max_attempts: int,
        queue: str,
        queue_key: str,
        now: float | None = None,
    ) -> Begun:
        verdict, value, outcome = self._begin(
            args=[
                self.keys.prefix,
                job_id,
                request.case_id,
                request.event_id,
                request.run_id or "",
                request.requested_by or "",
                request.reason or "",
                repr(now if now is not None else time.time()),
                max_attempts,
                queue,
                queue_key,
            ]
        )
        verdict = _s(verdict)
        if verdict == "settled":
            return Begun("settled", 0, state=_s(value), outcome=_s(outcome) or None)
        return Begun(verdict, int(value))  # type: ignore[arg-type]

    def finish(
        self,
        job_id: str,
        *,
        attempt: Attempt | None,
        decision: Decision,
        outcome: str = "",
        delay_seconds: float = 0.0,
        retry_message: TaskMessage | None = None,
        retention_seconds: float | None = None,
        now: float | None = None,
    ) -> bool:
        """Apply the result of an attempt (or, with `attempt=None`, settle without a call).

        Returns False when nothing changed: the job was already settled, or a newer
        attempt has begun since this one (a redelivered message overtook us).
        """
        if decision == "retry" and retry_message is None:
            raise ValueError("a retry needs the message to push when it is due")
        applied, _state = self._finish(
            args=[
                self.keys.prefix,
                job_id,
                attempt.number if attempt else 0,
                attempt.encode() if attempt else "",
                decision,
                outcome,
                repr(now if now is not None else time.time()),
                repr(delay_seconds),
                _delayed_entry(retry_message) if retry_message else "",
                int(retention_seconds or 0),
                "" if attempt is None or attempt.http_status is None else attempt.http_status,
            ]
        )
        return bool(int(applied))

    def defer(self, job_id: str, *, delay_seconds: float, message: TaskMessage) -> bool:
        """Put a job back in the delayed set without using an attempt (a gate said "not now").

        Returns False if the job is already settled or dead (nothing to defer).
        """
        args = [self.keys.prefix, job_id, repr(delay_seconds), _delayed_entry(message)]
        return bool(int(self._defer(args=args)))

    def calls_last(self, seconds: int = 60) -> dict[str, int]:
        """Calls made to Care360 in the last `seconds`, by HTTP status ('none': no answer)."""
        now = int(self.redis.time()[0])
        pipe = self.redis.pipeline(transaction=False)
        for second in range(now - seconds + 1, now + 1):
            pipe.hgetall(self.keys.calls(second))
        totals: dict[str, int] = {}
        for bucket in pipe.execute():
            for status, count in _decode_hash(bucket).items():
                totals[status] = totals.get(status, 0) + int(count)
        return totals

    def replay(
        self, job_id: str, message: TaskMessage, *, who: str, now: float | None = None
    ) -> Replayed:
        """Put a dead job back on its queue with a fresh attempt budget (`lua/replay.lua`).

        Refused (nothing changes) unless the job is dead. The earlier attempts stay in its
        list, followed by a note (number 0, verdict `replayed`) of who replayed it and when;
        attempt numbers then start again at 1, because `begin.lua` counts the budget from
        the job's `attempts` field, which the replay resets.
        """
        at = now if now is not None else time.time()
        note = Attempt(
            number=0,
            started_at=at,
            duration_ms=None,
            http_status=None,
            error_class="Replay",
            error=f"replayed by {who}: new attempt budget, numbering restarts at 1",
            verdict="replayed",
        )
        applied, state, replays = self._replay(
            args=[self.keys.prefix, job_id, repr(at), note.encode(), message.queue_key,
                  message.payload]
        )
        return Replayed(job_id, bool(int(applied)), _s(state), int(replays))

    @cached_property
    def _replay(self) -> Any:
        return self.redis.register_script(script_source("replay"))

    def promote_due(self, limit: int = 500) -> int:
        """Push due retries to their queues; returns how many moved."""
        return int(self._promote(args=[self.keys.prefix, limit]))

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str, *, with_attempts: bool = True) -> JobRecord | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        if with_attempts:
            pipe.lrange(self.keys.attempts(job_id), 0, -1)
        replies = pipe.execute()
        raw = _decode_hash(replies[0])
        if not raw:
            return None
        attempts = replies[1] if with_attempts else []
        return JobRecord.from_hash(raw, attempts)

    def get_many(self, job_ids: Sequence[str], *, with_attempts: bool = True) -> list[JobRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
            if with_attempts:
                pipe.lrange(self.keys.attempts(job_id), 0, -1)
        replies = pipe.execute()
        step = 2 if with_attempts else 1
        records = []
        for i in range(0, len(replies), step):
            raw = _decode_hash(replies[i])
            if raw:
                attempts = replies[i + 1] if with_attempts else []
                records.append(JobRecord.from_hash(raw, attempts))
        return records

    def job_for_pair(self, case_id: str, event_id: str) -> str | None:
        value = self.redis.get(self.keys.pair(case_id, event_id))
        return _s(value) if value is not None else None

    def query(self, q: Query, *, with_attempts: bool = False) -> list[JobRecord]:
        """Newest first. Reads the most selective index, then filters the few records read."""
        index = self._index_for(q)
        low = q.since if q.since is not None else "-inf"
        records: list[JobRecord] = []
        offset, page = 0, max(q.limit, 50)
        while len(records) < q.limit:
            ids = self.redis.zrevrangebyscore(index, "+inf", low, start=offset, num=page)
            if not ids:
                break
            offset += len(ids)
            for record in self.get_many([_s(i) for i in ids], with_attempts=with_attempts):
                if _matches(record, q):
                    records.append(record)
                    if len(records) >= q.limit:
                        break
        return records

    def counters(self, run_id: str | None = None) -> dict[str, int]:
        key = self.keys.run_stats(run_id) if run_id else self.keys.stats
        return {k: int(v) for k, v in _decode_hash(self.redis.hgetall(key)).items()}

    def delayed_count(self) -> int:
        return int(self.redis.zcard(self.keys.delayed))

    def _index_for(self, q: Query) -> str:
        if q.event_id:
            return self.keys.index_event(q.event_id)
        if q.case_id:
            return self.keys.index_case(q.case_id)
        if q.run_id:
            return self.keys.index_run(q.run_id)
        if q.state:
            return self.keys.index_state(q.state)
        if q.outcome:
            return self.keys.index_outcome(q.outcome)
        return self.keys.index_all


def _matches(record: JobRecord, q: Query) -> bool:
    return (
        (q.case_id is None or record.case_id == q.case_id)
        and (q.event_id is None or record.event_id == q.event_id)
        and (q.run_id is None or record.run_id == q.run_id)
        and (q.outcome is None or record.outcome == q.outcome)
        and (q.state is None or record.state.value == q.state)
        and (q.since is None or record.created_at >= q.since)
    )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def audit_store(settings: Settings) -> AuditStore:
    """The audit store on `REDIS_URL` under `KEY_PREFIX`."""
    return AuditStore(
        redis_client(settings), Keys(settings.key_prefix), Queues.from_settings(settings)
    )
