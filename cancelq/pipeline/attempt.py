"""One attempt of one job: begin, call, classify, record. Plain Python, no Celery.

The task is a thin shell around `run_attempt`, so every business rule here is unit-tested
with fakeredis and an httpx mock transport, and the same code runs in the real worker.
A retry is not a Celery countdown: the job goes to the store's delayed set with the
message to push when due, and this attempt returns at once. A waiting job therefore holds
no worker slot, no worker memory and no unacked broker message (a Celery ETA message waits
in the worker's RAM, unacked, and is redelivered each time it outlives the broker's
visibility timeout).

Every step takes an `AttemptContext` (the runtime, the job and its queue) and, once the call
is made, a `Call` (attempt number, start, duration) rather than a list of positional values.
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
from cancelq.store.messages import TaskMessage, build_task_message
from cancelq.store.queues import queue_key
from cancelq.store.records import Attempt, Begun

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


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """The job an attempt works on, and where its message came from: what every step needs.

    `queue` and `priority` matter beyond the audit: a deferral or a retry puts the job back
    on the same queue and priority sub-list, so a bulk job never overtakes a realtime one.
    """

    rt: Runtime
    job_id: str
    request: CancelRequest
    queue: str
    priority: int = 0

    @property
    def queue_key(self) -> str:
        return queue_key(self.queue, self.priority)

    def message(self) -> TaskMessage:
        """The message that runs this job again later, built exactly as producers build it."""
        return build_task_message(
            {"job_id": self.job_id, **self.request.model_dump(exclude_none=True)},
            queue=self.queue,
            priority=self.priority,
        )

    def begin(self, max_attempts: int) -> Begun:
        return self.rt.store.begin(
            self.job_id,
            self.request,
            max_attempts=max_attempts,
            queue=self.queue,
            queue_key=self.queue_key,
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One call to Care360: which attempt it was, when it started, how long it took."""

    number: int
    started_at: float
    duration_ms: float


def run_attempt(
    rt: Runtime,
    job_id: str,
    request: CancelRequest,
    *,
    queue: str,
    priority: int = 0,
) -> AttemptResult:
    """Ask the gates, begin the attempt in the store, call Care360 once, record what it said."""
    ctx = AttemptContext(rt, job_id, request, queue, priority)
    stopped = _ask_gates(ctx)
    if stopped is not None:
        return stopped
    max_attempts = rt.settings.max_attempts
    begun = ctx.begin(max_attempts)
    if begun.verdict == "settled":
        log.info("job %s already %s (%s): not called again", job_id, begun.state, begun.outcome)
        return AttemptResult(job_id, begun.state or "", begun.outcome, begun.attempt, False)
    if begun.verdict == "exhausted":
        return settle_without_call(
            ctx, Outcome.RETRIES_EXHAUSTED, f"all {max_attempts} attempts already used",
            attempts=begun.attempt,
        )
    return _call(ctx, begun.attempt)


def _ask_gates(ctx: AttemptContext) -> AttemptResult | None:
    """The first gate that does not let the call go ahead decides; None when all do."""
    for gate in ctx.rt.gates:
        verdict = gate.before_call(ctx.job_id, ctx.request, ctx.queue)
        if isinstance(verdict, Defer):
            ctx.rt.store.defer(ctx.job_id, delay_seconds=verdict.seconds, message=ctx.message())
            log.debug("job %s deferred %.2fs: %s", ctx.job_id, verdict.seconds, verdict.why)
            return AttemptResult(ctx.job_id, "deferred", None, 0, False, verdict.seconds)
        if isinstance(verdict, EndWithoutCall):
            ctx.begin(max_attempts=0)
            return settle_without_call(ctx, verdict.outcome, verdict.why)
    return None


def _call(ctx: AttemptContext, number: int) -> AttemptResult:
    """Call Care360 once; a retryable failure (raised or classified) goes to `_after_transient`."""
    started_at = time.time()
    t0 = time.perf_counter()
    answer: Answer | None = None
    try:
        answer = ctx.rt.client.cancel(ctx.request.case_id, ctx.request.event_id)
        outcome = classify(answer)
    except RetryableError as exc:
        return _after_transient(ctx, Call(number, started_at, _ms_since(t0)), exc, answer)
    return _after_final(ctx, Call(number, started_at, _ms_since(t0)), answer, outcome)


def _after_final(
    ctx: AttemptContext, call: Call, answer: Answer, outcome: Outcome
) -> AttemptResult:
    """A final answer: the job settles (or dies) with the attempt that got it."""
    decision: Decision = "dead" if outcome.is_dead else "settle"
    cancelled = outcome is Outcome.CANCELLED
    attempt = Attempt(
        number=call.number,
        started_at=call.started_at,
        duration_ms=call.duration_ms,
        http_status=answer.status,
        error_class=None if cancelled else "FinalAnswer",
        error=answer.error or (answer.message if not cancelled else None),
        verdict=outcome.value,
        raw_body=answer.raw_body if outcome in RAW_BODY_OUTCOMES else None,
    )
    applied = ctx.rt.store.finish(
        ctx.job_id,
        attempt=attempt,
        decision=decision,
        outcome=outcome.value,
        retention_seconds=_retention(ctx.rt.settings),
    )
    _notify(ctx.rt, ctx.job_id, answer.status, outcome.value)
    _log_outcome(ctx, call, outcome.value, answer.status, applied)
    state = "dead" if decision == "dead" else "settled"
    return AttemptResult(ctx.job_id, state, outcome.value, call.number, True)


def _after_transient(
    ctx: AttemptContext, call: Call, exc: RetryableError, answer: Answer | None
) -> AttemptResult:
    """A failure worth retrying: schedule the retry, or dead-letter if this was the last try."""
    status = exc.status if isinstance(exc, TransientResponse) else None
    _notify(ctx.rt, ctx.job_id, status, None)
    if call.number >= ctx.rt.settings.max_attempts:
        return _dead_after_last_try(ctx, call, exc, answer)
    return _schedule_retry(ctx, call, exc, answer)


def _dead_after_last_try(
    ctx: AttemptContext, call: Call, exc: RetryableError, answer: Answer | None
) -> AttemptResult:
    exhausted = Outcome.RETRIES_EXHAUSTED.value
    attempt = _transient_attempt(call, exc, answer, verdict=exhausted, delay=None)
    applied = ctx.rt.store.finish(
        ctx.job_id,
        attempt=attempt,
        decision="dead",
        outcome=exhausted,
        retention_seconds=_retention(ctx.rt.settings),
    )
    _log_outcome(ctx, call, exhausted, attempt.http_status, applied)
    return AttemptResult(ctx.job_id, "dead", exhausted, call.number, True)


def _schedule_retry(
    ctx: AttemptContext, call: Call, exc: RetryableError, answer: Answer | None
) -> AttemptResult:
    """Park the job in the delayed set with the message to push when due; hold nothing."""
    settings = ctx.rt.settings
    delay = round(
        next_delay(
            call.number,
            retry_after=exc.delay,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            rand=ctx.rt.rand,
        ),
        3,
    )
    attempt = _transient_attempt(call, exc, answer, verdict="retry", delay=delay)
    applied = ctx.rt.store.finish(
        ctx.job_id, attempt=attempt, decision="retry", delay_seconds=delay,
        retry_message=ctx.message(),
    )
    log.info(
        "job %s attempt %d: %s; retry in %.1fs%s",
        ctx.job_id, call.number, exc, delay, "" if applied else " (stale attempt, not recorded)",
    )
    return AttemptResult(ctx.job_id, "retrying", None, call.number, True, retry_in_seconds=delay)


def _transient_attempt(
    call: Call, exc: RetryableError, answer: Answer | None, *, verdict: str, delay: float | None
) -> Attempt:
    return Attempt(
        number=call.number,
        started_at=call.started_at,
        duration_ms=call.duration_ms,
        http_status=exc.status if isinstance(exc, TransientResponse) else None,
        error_class=type(exc).__name__,
        error=str(exc),
        verdict=verdict,
        retry_in_seconds=delay,
        raw_body=answer.raw_body if answer is not None else None,
    )


def settle_without_call(
    ctx: AttemptContext, outcome: Outcome, why: str, *, attempts: int = 0
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
    ctx.rt.store.finish(
        ctx.job_id,
        attempt=note,
        decision=decision,
        outcome=outcome.value,
        retention_seconds=_retention(ctx.rt.settings),
    )
    log.info("job %s: %s without a call: %s", ctx.job_id, outcome.value, why)
    state = "dead" if decision == "dead" else "settled"
    return AttemptResult(ctx.job_id, state, outcome.value, attempts, False)


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
    ctx = AttemptContext(rt, job_id, request, queue)
    ctx.begin(max_attempts=0)
    return settle_without_call(ctx, Outcome.INVALID_REQUEST, problem)


def _notify(rt: Runtime, job_id: str, status: int | None, outcome: str | None) -> None:
    for gate in rt.gates:
        try:
            gate.after_answer(job_id, status, outcome)
        except Exception:  # a failing policy hook must never lose the recorded outcome
            log.exception("gate %r failed after an answer", gate)


def _retention(settings: Settings) -> float | None:
    days = settings.audit_retention_days
    return days * 86400 if days else None


def _ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def _log_outcome(
    ctx: AttemptContext, call: Call, outcome: str, status: int | None, applied: bool
) -> None:
    log.info(
        "job %s attempt %d: %s (HTTP %s, %.0f ms)%s",
        ctx.job_id, call.number, outcome, status, call.duration_ms,
        "" if applied else " (already settled elsewhere, not recorded)",
    )
