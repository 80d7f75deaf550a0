"""The audit store: every job and every attempt, in Redis, queryable without a scan.

Every change of a job is one Lua script (`cancelq/store/lua/*.lua`, loaded by
`cancelq.store.scripts`), so counters, indexes, the record and the broker queue can never
disagree: enqueue records the job and pushes its message in one step; finish appends the
attempt and settles, dead-letters or schedules the retry in one step; a second finish for
the same attempt changes nothing. The key layout is in `cancelq.store.keys`, the records
read back in `cancelq.store.records`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import BeginVerdict, Decision, State, Verdict
from cancelq.core.settings import Settings
from cancelq.store.codec import decode_counters, decode_hash, decode_text
from cancelq.store.connections import redis_client
from cancelq.store.keys import Keys
from cancelq.store.messages import TaskMessage
from cancelq.store.records import Attempt, Begun, Enqueued, JobRecord, Query, Replayed
from cancelq.store.scripts import Scripts

#: One row of `start_enqueue_many`: job_id, case_id, event_id, reason ('' for none), and the
#: message payload. No field may hold a newline (`lua/enqueue_many.lua` splits on it).
NewJob = tuple[str, str, str, str, str]


def _delayed_entry(message: TaskMessage) -> str:
    return f"{message.queue_key}\n{message.payload}"


class AuditStore:
    """Typed access to the audit keys; safe to share between threads (redis-py pools)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.scripts = Scripts(client)

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
        created, job_id, state = reply
        return Enqueued(
            job_id=decode_text(job_id), duplicate=not int(created), state=State(decode_text(state))
        )

    def start_enqueue_many(
        self,
        rows: Sequence[NewJob],
        *,
        run_id: str,
        requested_by: str | None,
        queue: str,
        queue_key: str,
        now: float | None = None,
    ) -> Callable[[], list[Enqueued]]:
        """`enqueue` for a chunk of rows of one run, in one call (`lua/enqueue_many.lua`).

        Same records, same idempotency rule, never forced. The call is sent at once and not
        waited for (`Scripts.start`): call the result to read one `Enqueued` per row, in
        order, duplicates flagged. Running a chunk again after an error sends only what is
        missing: the rest are duplicates of live jobs.
        """
        if not rows:
            return list
        args = [
            self.keys.prefix,
            run_id,
            requested_by or "",
            repr(now if now is not None else time.time()),
            queue,
            queue_key,
        ]
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
        now: float | None = None,
    ) -> Begun:
        verdict, value, outcome = self.scripts(
            "begin",
            [*self._job_args(job_id, request, now), max_attempts, queue, queue_key],
        )
        verdict = cast(BeginVerdict, decode_text(verdict))
        if verdict == "settled":
            state, done = decode_text(value), decode_text(outcome) or None
            return Begun("settled", 0, state=state, outcome=done)
        return Begun(verdict, int(value))

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
        applied, _state = self.scripts(
            "finish",
            [
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
            ],
        )
        return bool(int(applied))

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
            verdict=Verdict.REPLAYED.value,
        )
        args = [self.keys.prefix, job_id, repr(at), note.encode(), message.queue_key,
                message.payload]
        applied, state, replays = self.scripts("replay", args)
        return Replayed(job_id, bool(int(applied)), decode_text(state), int(replays))

    def promote_due(self, limit: int = 500) -> int:
        """Push due retries to their queues; returns how many moved."""
        return int(self.scripts("promote", [self.keys.prefix, limit]))

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str, *, with_attempts: bool = True) -> JobRecord | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        if with_attempts:
            pipe.lrange(self.keys.attempts(job_id), 0, -1)
        replies = pipe.execute()
        raw = decode_hash(replies[0])
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
            raw = decode_hash(replies[i])
            if raw:
                attempts = replies[i + 1] if with_attempts else []
                records.append(JobRecord.from_hash(raw, attempts))
        return records

    def job_for_pair(self, case_id: str, event_id: str) -> str | None:
        value = self.redis.get(self.keys.pair(case_id, event_id))
        return decode_text(value) if value is not None else None

    def query(self, q: Query, *, with_attempts: bool = False) -> list[JobRecord]:
        """Newest first. Reads the most selective index, then filters the few records read."""
        index = self._index_for(q)
        low = q.since if q.since is not None else "-inf"
        # The outcome index is scored by settled time: only `_matches` can apply `until` there.
        by_created = not (q.outcome and index == self.keys.index_outcome(q.outcome))
        high = q.until if q.until is not None and by_created else "+inf"
        records: list[JobRecord] = []
        offset, page = 0, max(q.limit, 50)
        while len(records) < q.limit:
            ids = self.redis.zrevrangebyscore(index, high, low, start=offset, num=page)
            if not ids:
                break
            offset += len(ids)
            for record in self.get_many([decode_text(i) for i in ids], with_attempts=with_attempts):
                if _matches(record, q):
                    records.append(record)
                    if len(records) >= q.limit:
                        break
        return records

    def counters(self, run_id: str | None = None) -> dict[str, int]:
        key = self.keys.run_stats(run_id) if run_id else self.keys.stats
        return decode_counters(self.redis.hgetall(key))

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
        and (q.until is None or record.created_at <= q.until)
    )


def audit_store(settings: Settings) -> AuditStore:
    """The audit store on `REDIS_URL` under `KEY_PREFIX`."""
    return AuditStore(redis_client(settings), Keys(settings.key_prefix))
