"""One attempt of one job: begin, call, classify, record. Plain Python, no Celery.

The task is a thin shell around `run_attempt`, so every business rule here is unit-tested
with fakeredis and an httpx mock transport, and the same code runs in the real worker.
A retry is not a Celery countdown: the job goes to the store's delayed set with the
message to push when due, and this attempt returns at once. A waiting job therefore holds
no worker slot, no worker memory and no unacked broker message (CELERY-NOTES.md: ETA
messages live in worker RAM and loop past the visibility timeout).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cancelq.care360.classify import classify
from cancelq.care360.client import Answer
from cancelq.core.backoff import next_delay
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import RetryableError, TransientResponse
from cancelq.core.lifecycle import Decision, Outcome
from cancelq.core.settings import Settings
from cancelq.pipeline.gates import Defer, EndWithoutCall
from cancelq.pipeline.runtime import Runtime
from cancelq.store.messages import build_task_message
from cancelq.store.queues import queue_key
from cancelq.store.records import Attempt

log = logging.getLogger("cancelq.attempt")

RAW_BODY_OUTCOMES = frozenset({Outcome.INVALID_REQUEST})


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the attempt did, for the task's return value (Flower shows it) and tests."""

    job_id: str
    state: str
    outcome: str | None
    attempt: int
    called: bool
    retry_in_seconds: float | None = None

    def summary(self) -> str:
        if self.state == "deferred":
            return f"deferred {self.retry_in_seconds:.2f}s without a call"
        if self.state == "retrying":
            return f"retrying: attempt {self.attempt} failed, next in {self.retry_in_seconds:.1f}s"
        return f"{self.state}: {self.outcome}"


def run_attempt(
    rt: Runtime,
    job_id: str,
    request: CancelRequest,
    *,
    queue: str,
    priority: int = 0,
) -> AttemptResult:
    settings, store = rt.settings, rt.store
    for gate in rt.gates:
        verdict = gate.before_call(job_id, request, queue)
        if isinstance(verdict, Defer):
            message = build_task_message(
                {"job_id": job_id, **request.model_dump(exclude_none=True)},
                queue=queue,
                priority=priority,
            )
            store.defer(job_id, delay_seconds=verdict.seconds, message=message)
            log.debug("job %s deferred %.2fs: %s", job_id, verdict.seconds, verdict.why)
            return AttemptResult(job_id, "deferred", None, 0, False, verdict.seconds)
        if isinstance(verdict, EndWithoutCall):
            store.begin(job_id, request, max_attempts=0, queue=queue,
                        queue_key=queue_key(queue, priority))
            return settle_without_call(rt, job_id, verdict.outcome, 0, verdict.why)
    begun = store.begin(
        job_id,
        request,
        max_attempts=settings.max_attempts,
        queue=queue,
        queue_key=queue_key(queue, priority),
    )
    if begun.verdict == "settled":
        log.info("job %s already %s (%s): not called again", job_id, begun.state, begun.outcome)
        return AttemptResult(job_id, begun.state or "", begun.outcome, begun.attempt, False)
    if begun.verdict == "exhausted":
        return settle_without_call(
            rt, job_id, Outcome.RETRIES_EXHAUSTED, begun.attempt,
            f"all {settings.max_attempts} attempts already used",
        )

    number = begun.attempt
    started_at = time.time()
    t0 = time.perf_counter()
    answer: Answer | None = None
    try:
        answer = rt.client.cancel(request.case_id, request.event_id)
        outcome = classify(answer)
    except RetryableError as exc:
        duration_ms = round((time.perf_counter() - t0) * 1000, 1)
        return _after_transient(
            rt, job_id, request, exc, answer, number, started_at, duration_ms, queue, priority
        )
    duration_ms = round((time.perf_counter() - t0) * 1000, 1)
    decision: Decision = "dead" if outcome.is_dead else "settle"
    attempt = Attempt(
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        http_status=answer.status,
        error_class=None if outcome is Outcome.CANCELLED else "FinalAnswer",
        error=answer.error or (answer.message if outcome is not Outcome.CANCELLED else None),
        verdict=outcome.value,
        raw_body=answer.raw_body if outcome in RAW_BODY_OUTCOMES else None,
    )
    applied = store.finish(
        job_id,
        attempt=attempt,
        decision=decision,
        outcome=outcome.value,
        retention_seconds=_retention(settings),
    )
    state = "dead" if decision == "dead" else "settled"
    _notify(rt, job_id, answer.status, outcome.value)
    _log_outcome(job_id, number, outcome.value, answer.status, duration_ms, applied)
    return AttemptResult(job_id, state, outcome.value, number, True)


def _after_transient(
    rt: Runtime,
    job_id: str,
    request: CancelRequest,
    exc: RetryableError,
    answer: Answer | None,
    number: int,
    started_at: float,
    duration_ms: float,
    queue: str,
    priority: int,
) -> AttemptResult:
    settings = rt.settings
    status = exc.status if isinstance(exc, TransientResponse) else None
    _notify(rt, job_id, status, None)
    exhausted = number >= settings.max_attempts
    delay = None
    if not exhausted:
        delay = round(
            next_delay(
                number,
                retry_after=exc.delay,
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
                rand=rt.rand,
            ),
            3,
        )
    attempt = Attempt(
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        http_status=status,
        error_class=type(exc).__name__,
        error=str(exc),
        verdict="retries_exhausted" if exhausted else "retry",
        retry_in_seconds=delay,
        raw_body=answer.raw_body if answer is not None else None,
    )
    if exhausted:
        applied = rt.store.finish(
            job_id,
            attempt=attempt,
            decision="dead",
            outcome=Outcome.RETRIES_EXHAUSTED.value,
            retention_seconds=_retention(settings),
        )
        _log_outcome(job_id, number, Outcome.RETRIES_EXHAUSTED.value, status, duration_ms, applied)
        return AttemptResult(job_id, "dead", Outcome.RETRIES_EXHAUSTED.value, number, True)
    message = build_task_message(
        {"job_id": job_id, **request.model_dump(exclude_none=True)},
        queue=queue,
        priority=priority,
    )
    applied = rt.store.finish(
        job_id, attempt=attempt, decision="retry", delay_seconds=delay or 0.0, retry_message=message
    )
    log.info(
        "job %s attempt %d: %s; retry in %.1fs%s",
        job_id, number, exc, delay, "" if applied else " (stale attempt, not recorded)",
    )
    return AttemptResult(job_id, "retrying", None, number, True, retry_in_seconds=delay)


def settle_without_call(
    rt: Runtime, job_id: str, outcome: Outcome, attempts: int, why: str
) -> AttemptResult:
    """End a job without calling Care360, leaving a note (number 0) of why in its attempts."""
    decision: Decision = "dead" if outcome.is_dead else "settle"
    note = Attempt(
        number=0,
        started_at=time.time(),
        duration_ms=None,
        http_status=None,
        error_class="NotCalled",
        error=why,
        verdict=outcome.value,
    )
    rt.store.finish(
        job_id,
        attempt=note,
        decision=decision,
        outcome=outcome.value,
        retention_seconds=_retention(rt.settings),
    )
    log.info("job %s: %s without a call: %s", job_id, outcome.value, why)
    state = "dead" if decision == "dead" else "settled"
    return AttemptResult(job_id, state, outcome.value, attempts, False)


def reject_invalid(
    rt: Runtime, job_id: str, fields: dict[str, str], problem: str, *, queue: str
) -> AttemptResult:
    """A message that fails the contract still gets a record, settled `invalid_request`.

    Only a foreign producer can send one (ours validate first); recording it keeps the
    promise that every accepted message ends in a recorded outcome.
    """
    request = CancelRequest.model_construct(
        case_id=fields.get("case_id", ""),
        event_id=fields.get("event_id", ""),
        run_id=fields.get("run_id"),
        requested_by=fields.get("requested_by"),
        reason=None,
    )
    rt.store.begin(job_id, request, max_attempts=0, queue=queue, queue_key=queue_key(queue))
    return settle_without_call(rt, job_id, Outcome.INVALID_REQUEST, 0, problem)


def _notify(rt: Runtime, job_id: str, status: int | None, outcome: str | None) -> None:
    for gate in rt.gates:
        try:
            gate.after_answer(job_id, status, outcome)
        except Exception:  # a failing policy hook must never lose the recorded outcome
            log.exception("gate %r failed after an answer", gate)


def _retention(settings: Settings) -> float | None:
    days = settings.audit_retention_days
    return days * 86400 if days else None


def _log_outcome(
    job_id: str, number: int, outcome: str, status: int | None, duration_ms: float, applied: bool
) -> None:
    log.info(
        "job %s attempt %d: %s (HTTP %s, %.0f ms)%s",
        job_id, number, outcome, status, duration_ms,
        "" if applied else " (already settled elsewhere, not recorded)",
    )
