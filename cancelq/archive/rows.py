"""A job record as archive rows, and back: the store's `JobRecord` and `Attempt` are the one
shape every reader gets, whether the job was read from Redis or from the archive.

Times are epoch seconds in the store and `timestamptz` in the archive (what a DBA queries
and what the partitions are bounded by); SQLite hands them back without a zone, so a naive
time is read as UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping

from cancelq.archive.schema import BODY_EXCERPT_CHARS
from cancelq.core.lifecycle import State
from cancelq.store.records import Attempt, JobRecord


def to_time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def from_time(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def job_row(record: JobRecord, archived_at: datetime) -> dict[str, Any]:
    """The `cancelq_jobs` row of a settled or dead job (`settled_at` is always set)."""
    return {
        "job_id": record.job_id,
        "created_at": to_time(record.created_at),
        "case_id": record.case_id,
        "event_id": record.event_id,
        "run_id": record.run_id,
        "requested_by": record.requested_by,
        "reason": record.reason,
        "state": record.state.value,
        "outcome": record.outcome,
        "attempt_count": record.attempt_count,
        "updated_at": to_time(record.updated_at),
        "settled_at": to_time(record.settled_at or record.updated_at),
        "queue": record.queue,
        "archived_at": archived_at,
    }


def attempt_rows(record: JobRecord) -> list[dict[str, Any]]:
    """One `cancelq_attempts` row per attempt, keyed by its place in the list."""
    created = to_time(record.created_at)
    return [
        {
            "job_id": record.job_id,
            "job_created_at": created,
            "seq": seq,
            "number": attempt.number,
            "started_at": to_time(attempt.started_at),
            "duration_ms": attempt.duration_ms,
            "http_status": attempt.http_status,
            "verdict": attempt.verdict,
            "error_class": attempt.error_class,
            "error": attempt.error,
            "retry_in_seconds": attempt.retry_in_seconds,
            "body_excerpt": (attempt.raw_body[:BODY_EXCERPT_CHARS]
                             if attempt.raw_body is not None else None),
            "worker": attempt.worker,
        }
        for seq, attempt in enumerate(record.attempts)
    ]


def to_attempt(row: RowMapping) -> Attempt:
    return Attempt(
        number=row["number"],
        started_at=from_time(row["started_at"]),
        duration_ms=row["duration_ms"],
        http_status=row["http_status"],
        error_class=row["error_class"],
        error=row["error"],
        verdict=row["verdict"],
        retry_in_seconds=row["retry_in_seconds"],
        raw_body=row["body_excerpt"],
        worker=row["worker"],
    )


def to_record(row: RowMapping, attempts: Iterable[Attempt] = ()) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        case_id=row["case_id"],
        event_id=row["event_id"],
        run_id=row["run_id"],
        requested_by=row["requested_by"],
        reason=row["reason"],
        state=State(row["state"]),
        outcome=row["outcome"],
        attempt_count=row["attempt_count"],
        created_at=from_time(row["created_at"]),
        updated_at=from_time(row["updated_at"]),
        settled_at=from_time(row["settled_at"]),
        next_attempt_at=None,
        queue=row["queue"],
        attempts=tuple(attempts),
    )


def months_of(records: Sequence[JobRecord]) -> set[tuple[int, int]]:
    """The (year, month) of every record's creation: the partitions a batch writes to."""
    return {(t.year, t.month) for t in (to_time(r.created_at) for r in records)}
