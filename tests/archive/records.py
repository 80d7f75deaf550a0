"""Settled job records as the store returns them, for the archive tests."""

from __future__ import annotations

import dataclasses
import uuid

from cancelq.core.lifecycle import State
from cancelq.store.records import Attempt, JobRecord


def settled(
    *, job_id: str | None = None, case_id: str | None = None, run_id: str | None = "run-1",
    outcome: str = "cancelled", created_at: float = 1_764_000_000.5, attempts: int = 2,
    state: State = State.SETTLED, body: str | None = None, updated_at: float | None = None,
) -> JobRecord:
    tries = tuple(
        Attempt(number=n, started_at=created_at + n, duration_ms=12.5 * n,
                http_status=503 if n < attempts else 200, error_class=None if n == attempts
                else "TransientResponse", error=None if n == attempts else "HTTP 503",
                verdict="retry" if n < attempts else outcome,
                retry_in_seconds=1.5 if n < attempts else None,
                raw_body=body if n == attempts else None,
                worker=f"host-{n}:{1000 + n}")
        for n in range(1, attempts + 1)
    )
    end = created_at + attempts + 0.25
    return JobRecord(
        job_id=job_id or str(uuid.uuid4()), case_id=case_id or str(uuid.uuid4()),
        event_id=str(uuid.uuid4()), run_id=run_id, requested_by="ops@host",
        reason="duplicate booking", state=state, outcome=outcome, attempt_count=attempts,
        created_at=created_at, updated_at=updated_at or end, settled_at=updated_at or end,
        next_attempt_at=None, queue="cancellations", attempts=tries,
    )


def to_micros(records: list[JobRecord]) -> list[JobRecord]:
    """Records with every time rounded to the microsecond, as `timestamptz` keeps them."""
    def job(r: JobRecord) -> JobRecord:
        return dataclasses.replace(
            r, created_at=_us(r.created_at), updated_at=_us(r.updated_at),
            settled_at=None if r.settled_at is None else _us(r.settled_at),
            attempts=tuple(dataclasses.replace(a, started_at=_us(a.started_at))
                           for a in r.attempts))
    return [job(r) for r in records]


def _us(t: float) -> float:
    return round(t, 6)
