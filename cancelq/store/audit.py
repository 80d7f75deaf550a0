"""The audit store: every job and every attempt, in Redis, queryable without a scan.

Every change of a job is one Lua script (`cancelq/store/lua/*.lua`, loaded by
`cancelq.store.scripts`), so counters, indexes, the record and the broker queue can never
disagree: enqueue records the job and pushes its message in one step (bulk intake: a chunk
of jobs and their batch messages); finish appends the attempt and settles, dead-letters or
schedules the retry in one step; a second finish for the same attempt changes nothing. The
key layout is in `cancelq.store.keys`, the records read back in `cancelq.store.records`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.lock import Lock
from redis.retry import Retry

from cancelq.core.contract import MAX_BATCH_JOBS, CancelRequest
from cancelq.core.lifecycle import BeginVerdict, Decision, Outcome, State, Verdict
from cancelq.core.settings import Settings
from cancelq.store.codec import decode_counters, decode_hash, decode_text
from cancelq.store.connections import redis_client
from cancelq.store.keys import FIELDS, Keys, lookup_field
from cancelq.store.messages import BatchTemplate, TaskMessage
from cancelq.store.poison import is_poison
from cancelq.store.queues import Queues
from cancelq.store.records import (
    ATTEMPT_TEXT,
    Attempt,
    Begun,
    Enqueued,
    JobRecord,
    Query,
    Replayed,
    read_stored_attempt,
)
from cancelq.store.replication import Replication
from cancelq.store.script_pipeline import script_pipeline
from cancelq.store.scripts import Scripts

log = logging.getLogger("cancelq.store")

#: One row of `start_enqueue_many`: job_id, case_id, event_id, reason ('' for none), and its
#: entry of a batch message's `jobs` as `cancelq.store.messages.job_fragment` writes it.
#: No field may hold a newline (`lua/enqueue_many.lua` splits on it).
NewJob = tuple[str, str, str, str, str]

#: A script call that rides on the next `finish` round trip instead of making one of its own
#: (the breaker's owed success, `cancelq.pipeline.breaker`). Given the pipeline, it queues
#: its script on it and returns what to do with the reply, or returns None (nothing owed).
Rider = Callable[[redis.client.Pipeline], Callable[[Any], None] | None]

log = logging.getLogger("cancelq.store")


def _delayed_entry(message: TaskMessage) -> str:
    return f"{message.queue_key}\n{message.payload}"


def _note(error_class: str, error: str, verdict: str, at: float) -> Attempt:
    """A line in a job's attempts that is not a call (number 0)."""
    return Attempt(number=0, started_at=at, duration_ms=None, http_status=None,
                   error_class=error_class, error=error, verdict=verdict)


@dataclass(frozen=True, slots=True)
class Promoted:
    """What one `promote` pass did: retries pushed, and entries set aside as bad."""

    moved: int
    bad: tuple[str, ...]

    @property
    def seen(self) -> int:
        return self.moved + len(self.bad)


@dataclass(frozen=True, slots=True)
class FinishCall:
    """One `finish`: what an attempt's answer means for its job (see `AuditStore.finish`).

    A value, so an attempt can decide first and record later: alone at once, or with the
    rest of its batch in one round trip (`AuditStore.finish_many`).
    """

    job_id: str
    attempt: Attempt | None
    decision: Decision
    owner: str
    outcome: str = ""
    delay_seconds: float = 0.0
    retry_message: TaskMessage | None = None
    retention_seconds: float | None = None
    spare: bool = False

    def __post_init__(self) -> None:
        if self.decision == "retry" and self.retry_message is None:
            raise ValueError("a retry needs the message to push when it is due")

    def args(self, prefix: str, now: float | None) -> list[Any]:
        """`lua/finish.lua`'s arguments."""
        attempt = self.attempt
        return [
            prefix,
            self.job_id,
            attempt.number if attempt else 0,
            attempt.encode() if attempt else "",
            self.decision,
            self.outcome,
            repr(now if now is not None else time.time()),
            repr(self.delay_seconds),
            _delayed_entry(self.retry_message) if self.retry_message else "",
            int(self.retention_seconds or 0),
            "" if attempt is None or attempt.http_status is None else attempt.http_status,
            self.owner,
            "1" if self.spare else "0",
        ]


class AuditStore:
    """Typed access to the audit keys; safe to share between threads (redis-py pools)."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, queues: Queues | None = None
    ) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.scripts = Scripts(client)
        # on Sentinel, a job's begin and finish wait for a replica (`replication`)
        self.replication = Replication(client)
        self.queues = queues or Queues()  # this deployment's broker queue names
        self._riders: list[Rider] = []

    # -- the connection -------------------------------------------------------------------

    def now(self) -> float:
        """Redis's clock: the one every worker's heartbeat and every lease is measured by."""
        seconds, micros = self.redis.time()
        return int(seconds) + int(micros) / 1_000_000

    def fail_fast(self) -> None:
        """A probe answers now: one quick retry, not the store's patient backoff."""
        self.redis.set_retry(Retry(NoBackoff(), 1))

    def close(self) -> None:
        self.redis.close()

    def lock(self, key: str, seconds: float) -> Lock:
        """A lock that is taken at once or not at all (`acquire()` never waits), expires
        after `seconds`, and may be released by another thread than the one that took it."""
        lock: Lock = self.redis.lock(key, timeout=seconds, blocking=False, thread_local=False)
        return lock

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
            *self._job_args(job_id, request, now),
            "1" if force else "0",
            queue,
            message.queue_key,
            message.payload,
        ]
        if pipe is not None:
            self.scripts("enqueue", args, client=pipe)
            return None
        return self.parse_enqueued(self.scripts("enqueue", args))

    def _job_args(self, job_id: str, request: CancelRequest, now: float | None) -> list[str]:
        """The first arguments of the scripts that may create a job (enqueue, begin)."""
        return [
            self.keys.prefix,
            job_id,
            request.case_id,
            request.event_id,
            request.run_id or "",
            request.requested_by or "",
            request.reason or "",
            repr(now if now is not None else time.time()),
        ]

    @staticmethod
    def parse_enqueued(reply: Sequence[Any]) -> Enqueued:
        created, job_id, state, *rest = reply
        return Enqueued(
            job_id=decode_text(job_id),
            duplicate=not int(created),
            state=State(decode_text(state)),
            refused=decode_text(rest[0]) if rest else "",
        )

    def start_enqueue_many(
        self,
        rows: Sequence[NewJob],
        *,
        template: BatchTemplate,
        batch_size: int,
        now: float | None = None,
    ) -> Callable[[], list[Enqueued]]:
        """`enqueue` for a chunk of rows of one run, in one call (`lua/enqueue_many.lua`).

        Same records, same idempotency rule, never forced; but the rows created go out as
        batch messages of up to `batch_size` jobs (`template`: the run, its queue and the
        message's frame), made by the script from the rows it accepted. The call is sent at
        once and not waited for (`Scripts.start`): call the result to read one `Enqueued`
        per row, in order, duplicates flagged. Running a chunk again after an error sends
        only what is missing: the rest are duplicates of live jobs.
        """
        if not 1 <= batch_size <= MAX_BATCH_JOBS:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_JOBS}, not {batch_size}")
        if not rows:
            return list
        batches = -(-len(rows) // batch_size)
        args = [
            self.keys.prefix,
            template.run_id,
            template.requested_by or "",
            repr(now if now is not None else time.time()),
            template.queue,
            template.queue_key,
            str(batch_size),
            str(len(template.parts)),
            *template.parts,
            str(batches),
        ]
        for _ in range(batches):  # a task id and a delivery tag per batch, as kombu makes them
            args += (str(uuid.uuid4()), str(uuid.uuid4()))
        args.extend("\n".join(row) for row in rows)
        reply = self.scripts.start("enqueue_many", args)
        job_ids = [row[0] for row in rows]
        return lambda: self._parse_many(job_ids, reply())

    @classmethod
    def _parse_many(cls, job_ids: list[str], reply: Sequence[Any]) -> list[Enqueued]:
        """All created, but for the duplicates the script lists as (row, job id, state)."""
        results = [Enqueued(job_id, False, State.QUEUED) for job_id in job_ids]
        for i in range(0, len(reply), 3):
            row_number, job_id, state = reply[i : i + 3]
            results[int(row_number) - 1] = cls.parse_enqueued((0, job_id, state))
        return results

    def begin(
        self,
        job_id: str,
        request: CancelRequest,
        *,
        max_attempts: int,
        queue: str,
        queue_key: str,
        owner: str,
        lease_seconds: float,
        retention_seconds: float | None = None,
        now: float | None = None,
    ) -> Begun:
        """Start an attempt under a lease held by `owner` (`lua/begin.lua`).

        `leased`: another copy of the job holds a live lease (`lease_left` seconds); nothing
        changed. `conflict`: the job id belongs to another (case, event); the message was
        recorded, rejected, on a job of its own (`rejected_job`) and must not run.
        `duplicate`: a message with no record names a pair whose live job is `live_job`
        (noted on it); `not_due`: the job's delayed entry is due in `due_in` seconds.
        """
        args = self._begin_args(job_id, request, owner, max_attempts, queue, queue_key,
                                lease_seconds, retention_seconds, now)
        if not self.replication.active:
            return _parse_begun(*self.scripts("begin", args))
        (reply,) = self._replicated(lambda pipe: self.scripts("begin", args, client=pipe))
        return _parse_begun(*reply)

    def begin_many(
        self,
        jobs: Sequence[tuple[str, CancelRequest, str]],
        *,
        max_attempts: int,
        queue: str,
        queue_key: str,
        lease_seconds: float,
        retention_seconds: float | None = None,
    ) -> list[Begun]:
        """`begin` for every (job id, request, owner) of a batch, in one round trip.

        Each job is still its own script call (its own atomic step, its own verdict): the
        pipeline saves the round trips, not the guarantees.
        """
        def fill(pipe: redis.client.Pipeline) -> None:
            for job_id, request, owner in jobs:
                self.scripts("begin", self._begin_args(
                    job_id, request, owner, max_attempts, queue, queue_key, lease_seconds,
                    retention_seconds, None), client=pipe)

        return [_parse_begun(*reply) for reply in self._replicated(fill)]

    def _replicated(self, fill: Callable[[redis.client.Pipeline], object]) -> list[Any]:
        """A pipeline of job writes; on Sentinel, confirmed by a replica (`replication`)."""
        pipe = script_pipeline(self.redis)
        fill(pipe)
        waited = self.replication.add_wait(pipe)
        return self.replication.confirm(pipe.execute(), waited)

    def _begin_args(
        self, job_id: str, request: CancelRequest, owner: str, max_attempts: int, queue: str,
        queue_key: str, lease_seconds: float, retention_seconds: float | None,
        now: float | None,
    ) -> list[Any]:
        at = now if now is not None else time.time()
        note = _note(
            "JobIdConflict",
            f"job id {job_id} belongs to another (case, event): this message was not run",
            Outcome.INVALID_REQUEST.value, at,
        )
        duplicate = _note(
            "Duplicate", f"message for job {job_id}, sent straight to the broker, asks for "
            "this (case, event) again: not run", Verdict.DUPLICATE.value, at,
        )
        return [
            *self._job_args(job_id, request, at), max_attempts, queue, queue_key, owner,
            repr(lease_seconds), str(uuid.uuid4()), note.encode(), int(retention_seconds or 0),
            duplicate.encode(),
        ]

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
        owner: str,
        spare: bool = False,
        now: float | None = None,
    ) -> bool:
        """Apply the result of `owner`'s attempt (or, with `attempt=None`, settle without a
        call). `spare`: a failed call that does not count against the attempt budget.

        Returns False when nothing changed: the job was already settled, or the attempt is
        not `owner`'s (its lease expired and another attempt began). True again when the
        same finish is repeated (a re-run after a socket timeout).
        """
        call = FinishCall(job_id, attempt, decision, owner, outcome, delay_seconds,
                          retry_message, retention_seconds, spare)
        return self.apply(call, now=now)

    def apply(self, call: FinishCall, *, now: float | None = None) -> bool:
        """Run one decided `finish` now (see `finish`)."""
        if self._riders or self.replication.active:
            return self._finish_round_trip([call], now)[0]
        applied, _state = self.scripts("finish", call.args(self.keys.prefix, now))
        return bool(int(applied))

    def finish_many(self, calls: Sequence[FinishCall]) -> list[bool]:
        """`finish` for a batch's attempts in one round trip; each is still its own step."""
        if not calls:
            return []
        return self._finish_round_trip(calls, None)

    def ride_along(self, rider: Rider) -> None:
        """Let `rider` add a script of its own to every `finish` round trip.

        An update that may wait for this process's next write (a success for the breaker:
        every answer is followed by its finish) then costs no round trip of its own.
        """
        self._riders.append(rider)

    def _finish_round_trip(self, calls: Sequence[FinishCall], now: float | None) -> list[bool]:
        """The finishes, then whatever the riders owe, in one pipeline. A rider's failure is
        logged, never in the way of the finishes' replies."""
        pipe = script_pipeline(self.redis)
        for call in calls:
            self.scripts("finish", call.args(self.keys.prefix, now), client=pipe)
        handlers = [handler for rider in self._riders if (handler := rider(pipe)) is not None]
        waited = self.replication.add_wait(pipe)  # on Sentinel: finishes must reach a replica
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:  # nothing came back: each rider is told so
            replies = [exc] * (len(calls) + len(handlers) + waited)
        if waited:
            self.replication.check(replies.pop())
        for handler, reply in zip(handlers, replies[len(calls):], strict=True):
            try:
                handler(reply)
            except Exception:
                log.exception("a script riding on finish failed")
        applied: list[bool] = []
        for reply in replies[:len(calls)]:
            if isinstance(reply, Exception):
                raise reply
            applied.append(bool(int(reply[0])))
        return applied

    def defer(self, job_id: str, *, delay_seconds: float, message: TaskMessage) -> bool:
        """Put a job back in the delayed set without using an attempt (a gate said "not now").

        Returns False if the job is already settled or dead (nothing to defer).
        """
        args = [self.keys.prefix, job_id, repr(delay_seconds), _delayed_entry(message)]
        return bool(int(self.scripts("defer", args)))

    def calls_last(self, seconds: int = 60) -> dict[str, int]:
        """Calls made to Care360 in the last `seconds`, by HTTP status ('none': no answer)."""
        now = int(self.redis.time()[0])
        pipe = self.redis.pipeline(transaction=False)
        for second in range(now - seconds + 1, now + 1):
            pipe.hgetall(self.keys.calls(second))
        totals: dict[str, int] = {}
        for bucket in pipe.execute():
            for status, count in decode_counters(bucket).items():
                totals[status] = totals.get(status, 0) + count
        return totals

    def calls_by_minute(self, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
        """Calls per HTTP status in each of the last `minutes` minutes (the current one
        last), as (epoch minute, counts): one round trip over the minute buckets."""
        now = int(self.redis.time()[0]) // 60
        span = range(now - minutes + 1, now + 1)
        pipe = self.redis.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(self.keys.calls_minute(minute))
        return [(minute, decode_counters(bucket))
                for minute, bucket in zip(span, pipe.execute(), strict=True)]

    def replay(
        self,
        job_id: str,
        message: TaskMessage,
        *,
        who: str,
        now: float | None = None,
        token: str | None = None,
    ) -> Replayed:
        """Put a dead job back on its queue with a fresh attempt budget (`lua/replay.lua`).

        Refused (nothing changes) unless the job is dead, or when its (case, event) pair now
        belongs to another live job (`pair_holder`). The earlier attempts stay in its list,
        followed by a note (number 0, verdict `replayed`) of who replayed it and when;
        attempt numbers then start again at 1, because `begin.lua` counts the budget from
        the job's `attempts` field, which the replay resets. `token` names this request: the
        script run twice with it (a re-run after a socket timeout) reports "applied" again.
        """
        at = now if now is not None else time.time()
        note = _note("Replay", f"replayed by {who}: new attempt budget, numbering restarts at 1",
                     Verdict.REPLAYED.value, at)
        args = [self.keys.prefix, job_id, repr(at), note.encode(), message.queue_key,
                message.payload, token or str(uuid.uuid4())]
        applied, state, replays, holder = self.scripts("replay", args)
        return Replayed(job_id, bool(int(applied)), decode_text(state), int(replays),
                        decode_text(holder))

    def reject(
        self,
        job_id: str,
        fields: dict[str, str],
        problem: str,
        *,
        queue: str,
        queue_key: str,
        retention_seconds: float | None = None,
        now: float | None = None,
    ) -> str:
        """Record a message that breaks the contract, settled `invalid_request` without a
        call (`lua/reject.lua`); returns the job id it is recorded on: `job_id` if new, a
        job of its own if that id is taken (a bad message never touches another's job)."""
        at = now if now is not None else time.time()
        note = _note("NotCalled", problem, Outcome.INVALID_REQUEST.value, at)
        _recorded, recorded_on = self.scripts("reject", [
            self.keys.prefix, job_id, str(uuid.uuid4()), fields.get("case_id", ""),
            fields.get("event_id", ""), fields.get("run_id", ""),
            fields.get("requested_by", ""), repr(at), queue, queue_key, note.encode(),
            int(retention_seconds or 0),
        ])
        return decode_text(recorded_on)

    def promote(self, limit: int = 500) -> Promoted:
        """Push due retries to our own queues; set aside (and name) entries that are bad."""
        reply = self.scripts("promote", [self.keys.prefix, limit, *self.queues.list_keys()])
        return Promoted(int(reply[0]), tuple(decode_text(i) for i in reply[1:]))

    def promote_due(self, limit: int = 500) -> int:
        """`promote`, returning only how many retries were pushed."""
        return self.promote(limit).moved

    def renew_leases(self, lease_seconds: float, held: Sequence[tuple[str, str]]) -> list[str]:
        """Extend the leases of (job id, owner) pairs; returns the jobs no longer held."""
        args: list[str] = [self.keys.prefix, repr(lease_seconds)]
        for job_id, owner in held:
            args += [job_id, owner]
        return [decode_text(i) for i in self.scripts("renew", args)]

    def expired_leases(self, limit: int) -> list[str]:
        """Jobs whose attempt lease has ended (by Redis's clock), oldest first.

        An entry whose id names no job record (its record key holds another type, as
        `<victim>:attempts` does) is dropped from the list and logged here: every read of
        it would fail, and the reaper, which reads each job first, would stop on it forever.
        """
        now = self.now()
        ids = [decode_text(i) for i in
               self.redis.zrangebyscore(self.keys.leases, "-inf", now, start=0, num=limit)]
        if not ids:
            return ids
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.type(self.keys.job(job_id))
        kinds = [decode_text(kind) for kind in pipe.execute()]
        poison = [job_id for job_id, kind in zip(ids, kinds, strict=True)
                  if kind not in ("hash", "none")]
        if poison:
            self.redis.zrem(self.keys.leases, *poison)
            for job_id in poison:
                log.error("leases: entry %.80r names no job record; dropped", job_id)
        return [job_id for job_id in ids if job_id not in poison]

    def drop_lease(self, job_id: str) -> None:
        """Forget the lease of a job that has no record any more (trimmed, or never had one)."""
        self.redis.zrem(self.keys.leases, job_id)

    def reap(
        self,
        job_id: str,
        message: TaskMessage,
        *,
        max_attempts: int,
        delay_seconds: float,
        retention_seconds: float | None = None,
        now: float | None = None,
    ) -> str | None:
        """Close an attempt whose lease expired; returns the job's new state, None if the
        lease was live again or the job no longer running (`lua/reap.lua`).

        An entry Redis refuses to reap for good (`cancelq.store.poison`: WRONGTYPE, a script
        error on its record) is dropped from the leases and logged, so the reaper goes on.
        """
        try:
            reaped, state = self.scripts("reap", [
                self.keys.prefix, job_id, max_attempts, repr(delay_seconds),
                _delayed_entry(message), repr(now if now is not None else time.time()),
                int(retention_seconds or 0),
            ])
        except redis.ResponseError as exc:
            if not is_poison(exc):
                raise
            self.redis.zrem(self.keys.leases, job_id)
            log.error("leases: entry %.80r could not be reaped (%.80s); dropped", job_id,
                      " ".join(str(exc).split()))
            return None
        if decode_text(state) == "poison":
            log.error("leases: entry %.80r names no job record; dropped", job_id)
        return decode_text(state) if int(reaped) else None

    def trim(self, limit: int = 200, *, retention_seconds: float, archived_only: bool = False,
             now: float | None = None) -> int:
        """Delete up to `limit` jobs that ended more than `retention_seconds` ago (0: keep
        every job), read from the outcome indexes (`lua/trim.lua`); returns how many. An
        entry that cannot be trimmed is dropped from its index and logged.
        `archived_only` (an archive is configured): a job the archive has not committed yet
        is kept. Without it, a trimmed job's entry on the archive's pending set goes with it
        (nobody else would ever take it off). `now`: Redis's clock unless given (a simulated
        week in bench/archive.py)."""
        args: list[str | int] = [self.keys.prefix, limit, "1" if archived_only else "0",
                                 int(retention_seconds)]
        if now is not None:
            args.append(repr(now))
        deleted, *bad = self.scripts("trim", args)
        for job_id in bad:
            log.error("retention: entry %.80r could not be trimmed; dropped from its outcome "
                      "index", decode_text(job_id))
        return int(deleted)

    def set_aside(self, message_id: str, body: str) -> None:
        """Keep a message Redis refused for good (`cancelq.store.poison`) in the `poison`
        hash, for an operator to read and resend; it is never handed back to the broker."""
        self.redis.hset(self.keys.poison, message_id, body)

    def set_aside_messages(self) -> dict[str, str]:
        """The messages `set_aside` kept, by message id."""
        return decode_hash(self.redis.hgetall(self.keys.poison))

    def delayed_bad(self) -> dict[str, str]:
        """The delayed entries `promote` set aside, by job id."""
        return decode_hash(self.redis.hgetall(self.keys.delayed_bad))

    def archive_pending(self, limit: int) -> list[tuple[str, str]]:
        """The oldest `limit` jobs settled but not yet archived: (job id, score as Redis
        wrote it). The score goes back to `archived`, which removes only that entry."""
        raw = cast(list[tuple[Any, Any]], self.redis.zrange(
            self.keys.archive_pending, 0, limit - 1, withscores=True, score_cast_func=decode_text))
        return [(decode_text(job_id), str(score)) for job_id, score in raw]

    def archived(self, entries: Sequence[tuple[str, str]]) -> int:
        """Take jobs the archive has committed off the pending set (`lua/archived.lua`);
        an entry whose score changed since it was read (the job settled again) stays."""
        if not entries:
            return 0
        args: list[str] = [self.keys.prefix]
        for job_id, score in entries:
            args.extend((job_id, score))
        return int(self.scripts("archived", args))

    def list_ended_for_archive(self, page: int = 1_000) -> int:
        """Put every settled and dead job on the archive's pending set, once (`NX`): jobs
        that ended before an archive was configured, or before this version listed them.
        Reads a page of `index_all` (settled jobs have no state index of their own) and of
        the dead index at a time; returns how many were new. A job trimmed or replayed
        meanwhile is harmless: the archiver drops an entry whose job is gone or live again."""
        added = 0
        for index in (self.keys.index_all, self.keys.index_state(State.DEAD.value)):
            start = 0
            while ids := [decode_text(i) for i in
                          self.redis.zrange(index, start, start + page - 1)]:
                ended = {}
                for job_id, fields in zip(ids, self.job_fields(ids, ("state", "settled_at")),
                                          strict=True):
                    if fields.get("state") in (State.SETTLED, State.DEAD) \
                            and fields.get("settled_at"):
                        ended[job_id] = float(fields["settled_at"])
                if ended:
                    added += int(self.redis.zadd(self.keys.archive_pending, dict(ended),
                                                 nx=True) or 0)
                start += page
        return added

    def archive_backlog(self) -> tuple[int, float | None]:
        """How many settled jobs wait for the archive, and when the oldest of them ended."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.archive_pending)
        pipe.zrange(self.keys.archive_pending, 0, 0, withscores=True)
        count, oldest = pipe.execute()
        return int(count), (float(oldest[0][1]) if oldest else None)

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str, *, with_attempts: bool = True) -> JobRecord | None:
        found = self.get_many([job_id], with_attempts=with_attempts)
        return found[0] if found else None

    def get_many(self, job_ids: Sequence[str], *, with_attempts: bool = True) -> list[JobRecord]:
        """The records of these ids that exist, in order; one HGETALL each (the attempts are
        inside the record), one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        records = []
        for job_id, reply in zip(job_ids, pipe.execute(), strict=True):
            raw = decode_hash(reply)
            if raw:
                records.append(JobRecord.from_hash(job_id, raw, with_attempts=with_attempts))
        return records

    def lookup_ids(self, *, case_id: str | None = None, event_id: str | None = None
                   ) -> list[str]:
        """The jobs of an event (or else of a case), oldest first, from `lookup`."""
        field = (lookup_field("event", event_id=event_id) if event_id is not None
                 else lookup_field("case", case_id=case_id or ""))
        text = self.redis.hget(self.keys.lookup, field)
        return decode_text(text).split() if text else []

    def job_for_pair(self, case_id: str, event_id: str) -> str | None:
        """The job holding the (case, event) pair: of the event's jobs of that case, the one
        whose record has no `no_pair` flag."""
        ids = self.lookup_ids(event_id=event_id)
        fields = self.job_fields(ids, ("case_id", "state", "no_pair"))
        for job_id, got in zip(ids, fields, strict=True):
            if got.get("state") and not got.get("no_pair") and got.get("case_id") == case_id:
                return job_id
        return None

    def query(self, q: Query, *, with_attempts: bool = False) -> list[JobRecord]:
        """Newest first. Reads the most selective index, then filters the few records read.

        Pages go by score, not by offset: the index changes while it is read (new jobs land
        at the newest end, jobs leave a state's index), and an offset then re-reads a job or
        skips one. Each page starts at the last score read, inclusive, and ids already read
        are skipped, so jobs sharing a score are neither lost nor doubled.
        """
        if q.event_id or q.case_id:
            return self._query_lookup(q, with_attempts)
        index = self._index_for(q)
        low = q.since if q.since is not None else "-inf"
        # The outcome index is scored by settled time: only `_matches` can apply `until` there.
        by_created = not (q.outcome and index == self.keys.index_outcome(q.outcome))
        high: float | str = q.until if q.until is not None and by_created else "+inf"
        records: list[JobRecord] = []
        seen: set[str] = set()
        page = max(q.limit, 50)
        while len(records) < q.limit:
            scored = cast("list[tuple[Any, float]]", self.redis.zrevrangebyscore(
                index, high, low, start=0, num=page, withscores=True))
            fresh = [decode_text(member) for member, _ in scored
                     if decode_text(member) not in seen]
            if not fresh and len(scored) == page:
                page *= 2  # a whole page shares one score, all read: look further
                continue
            seen.update(fresh)
            for record in self.get_many(fresh, with_attempts=with_attempts):
                if _matches(record, q):
                    records.append(record)
                    if len(records) >= q.limit:
                        break
            if len(scored) < page:
                break
            high = scored[-1][1]
        return records

    def _query_lookup(self, q: Query, with_attempts: bool) -> list[JobRecord]:
        """`query` by event or case: their few jobs from `lookup`, newest first."""
        ids = self.lookup_ids(case_id=q.case_id, event_id=q.event_id)
        records = [r for r in self.get_many(ids, with_attempts=with_attempts) if _matches(r, q)]
        records.sort(key=lambda r: (r.created_at, r.job_id), reverse=True)
        return records[: q.limit]

    def queue_keys_of(self, job_ids: Sequence[str]) -> list[str | None]:
        """The list each job's message was last pushed to (its priority step with it), one
        round trip; None for a job that has none recorded. A record keeps `queue_key` only
        when it is not the queue's own list."""
        return [fields.get("queue_key") or fields.get("queue") for fields in
                self.job_fields(job_ids, ("queue_key", "queue"))]

    def existing(self, job_ids: Sequence[str]) -> list[str]:
        """The ids, in order, that have a record (one round trip)."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(self.keys.job(job_id))
        return [job_id for job_id, there in zip(job_ids, pipe.execute(), strict=True) if there]

    def ids_starting_with(self, prefix: str, *, enough: int, count: int) -> list[str]:
        """Ids in `idx:all` that start with `prefix` (SCAN, `count` a page), without
        repeats; stops once more than `enough` are found."""
        found: list[str] = []
        cursor = 0
        while True:
            cursor, page = self.redis.zscan(
                self.keys.index_all, cursor, match=f"{prefix}*", count=count
            )
            found.extend(decode_text(member) for member, _score in page)
            if cursor == 0 or len(found) > enough:
                return list(dict.fromkeys(found))

    def next_messages(self, list_keys: Sequence[str]) -> list[str | bytes | None]:
        """The message each broker list hands out next (kombu pops the right end), one
        round trip; None for an empty list."""
        pipe = self.redis.pipeline(transaction=False)
        for key in list_keys:
            pipe.lindex(key, -1)
        return list(pipe.execute())

    def job_fields(
        self, job_ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, str]]:
        """Some fields of each job's record (`keys.FIELDS` names), one round trip; a field not
        set is left out."""
        if not job_ids:
            return []
        stored = [FIELDS[name] for name in fields]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), *stored)
        return [{k: decode_text(v) for k, v in zip(fields, values, strict=True) if v is not None}
                for values in pipe.execute()]

    def last_attempts(self, job_ids: Sequence[str]) -> list[str | None]:
        """Each job's last attempt or note as its JSON (`Attempt.decode` reads it, as it read
        v1's stored one); None: none, or no record. Two round trips."""
        counts = self.job_fields(job_ids, ("entries",))
        last = [int(c.get("entries") or 0) for c in counts]
        pipe = self.redis.pipeline(transaction=False)
        for job_id, n in zip(job_ids, last, strict=True):
            prefix = f"{FIELDS['attempt']}{n}"
            pipe.hmget(self.keys.job(job_id), prefix,
                       *(prefix + suffix for suffix in ATTEMPT_TEXT.values()))
        out: list[str | None] = []
        for n, values in zip(last, pipe.execute(), strict=True):
            prefix = f"{FIELDS['attempt']}{n}"
            names = [prefix, *(prefix + suffix for suffix in ATTEMPT_TEXT.values())]
            raw = {k: decode_text(v) for k, v in zip(names, values, strict=True) if v is not None}
            out.append(read_stored_attempt(raw, n).encode() if n and prefix in raw else None)
        return out

    def index_ids(self, index: str, start: int = 0, stop: int = -1) -> list[str]:
        """The job ids of an index (`Keys.index_state` and the like), oldest first."""
        return [decode_text(i) for i in self.redis.zrange(index, start, stop)]

    def drop_index_entries(self, index: str, job_ids: Sequence[str]) -> None:
        """Drop entries whose record is gone (deleted behind the store's back)."""
        if job_ids:
            self.redis.zrem(index, *job_ids)

    def counters(self, run_id: str | None = None) -> dict[str, int]:
        key = self.keys.run_stats(run_id) if run_id else self.keys.stats
        return decode_counters(self.redis.hgetall(key))

    def delayed_count(self) -> int:
        return int(self.redis.zcard(self.keys.delayed))

    def _index_for(self, q: Query) -> str:
        """The index to walk (event and case go through `lookup`, not here): the smaller of
        the run's and the state's when both are named (their sizes in one round trip: the
        dead jobs of a 10,000-job run are the 30 of `idx:state:dead`, not the run's 10,000);
        else the one named. Both are scored by created time, so the order and `since`/`until`
        mean the same whichever is walked. Settled jobs have no state index (`idx:all`)."""
        if q.run_id and q.state and q.state != State.SETTLED:
            run, state = self.keys.index_run(q.run_id), self.keys.index_state(q.state)
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(run)
            pipe.zcard(state)
            run_size, state_size = pipe.execute()
            return state if int(state_size) < int(run_size) else run
        if q.run_id:
            return self.keys.index_run(q.run_id)
        if q.state and q.state != State.SETTLED:
            return self.keys.index_state(q.state)
        if q.outcome:
            return self.keys.index_outcome(q.outcome)
        return self.keys.index_all


def _parse_begun(raw: Any, value: Any, extra: Any) -> Begun:
    verdict = cast(BeginVerdict, decode_text(raw))
    if verdict == "settled":
        state, done = decode_text(value), decode_text(extra) or None
        return Begun("settled", 0, state=state, outcome=done)
    if verdict == "conflict":
        return Begun("conflict", 0, rejected_job=decode_text(value))
    if verdict == "leased":
        return Begun("leased", int(value), lease_left=float(decode_text(extra)))
    if verdict == "run":
        return Begun("run", int(value), used=int(extra))
    if verdict == "duplicate":
        return Begun("duplicate", 0, state=decode_text(extra), live_job=decode_text(value))
    if verdict == "not_due":
        return Begun("not_due", int(value), due_in=float(decode_text(extra)))
    return Begun(verdict, int(value))


def _matches(record: JobRecord, q: Query) -> bool:
    return (
        (q.case_id is None or record.case_id == q.case_id)
        and (q.event_id is None or record.event_id == q.event_id)
        and (q.run_id is None or record.run_id == q.run_id)
        and (q.outcome is None or record.outcome == q.outcome)
        and (q.state is None or record.state.value == q.state)
        and (q.since is None or record.created_at >= q.since)
        and (q.until is None or record.created_at <= q.until)
    )


def audit_store(settings: Settings) -> AuditStore:
    """The audit store on `REDIS_URL` under `KEY_PREFIX`."""
    return AuditStore(
        redis_client(settings), Keys(settings.key_prefix), Queues.from_settings(settings)
    )
