"""Jobs in every state, written through the store's own scripts, for the CLI's tests."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.records import Attempt

MARKUP_REASON = "moved [/x] to [bold]next week[/bold]"
FORMULA_REASON = "=cmd|' /C calc'!A0"


@dataclass(frozen=True)
class Seeded:
    queued: str
    cancelled: str
    dead: str
    markup: str
    run_id: str


def add_job(store: AuditStore, *, run_id: str | None = None, reason: str | None = None,
            job_id: str | None = None, now: float | None = None) -> str:
    job_id = job_id or str(uuid.uuid4())
    request = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
                                  run_id=run_id, reason=reason)
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=store.queues.realtime, task_id=job_id)
    assert store.enqueue(job_id, request, message, queue=store.queues.realtime, now=now) is not None
    return job_id


def finish(store: AuditStore, job_id: str, *, status: int, error: str | None, outcome: str,
           dead: bool = False) -> None:
    record = store.get(job_id)
    assert record is not None
    request = CancelRequest.parse(case_id=record.case_id, event_id=record.event_id,
                                  run_id=record.run_id)
    begun = store.begin(job_id, request, max_attempts=8, queue=store.queues.realtime,
                        queue_key=store.queues.realtime, owner="seed", lease_seconds=30)
    attempt = Attempt(number=begun.attempt, started_at=time.time(), duration_ms=12.0,
                      http_status=status, error_class="TransientResponse" if dead else None,
                      error=error, verdict=outcome)
    assert store.finish(job_id, attempt=attempt, decision="dead" if dead else "settle",
                        outcome=outcome, owner="seed")


def seed(store: AuditStore, run_id: str = "clinic-42") -> Seeded:
    queued = add_job(store, run_id=run_id, reason=FORMULA_REASON)
    cancelled = add_job(store, run_id=run_id)
    finish(store, cancelled, status=200, error=None, outcome="cancelled")
    dead = add_job(store, run_id=run_id)
    finish(store, dead, status=503, error="HTTP 503: Service Unavailable",
           outcome="retries_exhausted", dead=True)
    markup = add_job(store, reason=MARKUP_REASON)
    finish(store, markup, status=400, error="bad [/x] body [red]", outcome="invalid_request")
    return Seeded(queued, cancelled, dead, markup, run_id)
