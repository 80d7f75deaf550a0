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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from cancelq.care360.classify import classify
from cancelq.care360.client import Answer
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import RetryableError, TransientResponse
from cancelq.core.lifecycle import Decision, Outcome
from cancelq.pipeline.gates import Defer, EndWithoutCall, Gate
from cancelq.pipeline.lease import new_owner, this_worker
from cancelq.pipeline.retry_policy import ERROR_DEFER_SECONDS, Dead, RetryPolicy
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import FinishCall
from cancelq.store.messages import TaskMessage, job_message
from cancelq.store.outage import until_recorded
from cancelq.store.queues import queue_key
from cancelq.store.records import Attempt, Begun

log = logging.getLogger("cancelq.attempt")

RAW_BODY_OUTCOMES = frozenset({Outcome.INVALID_REQUEST})
#: a leased copy comes back this long after the other copy's lease would end, at most
LEASE_JITTER_SECONDS = 1.0


class UnexpectedError(RetryableError):
    """Anything else a call raised (a broken gzip body, JSON nested too deep, a bug).

    Recorded with that exception's class name and retried like a transient failure, so the
    job never stays `running`. Its text is the class name only: a foreign exception's
    message, or its `.request`, may carry the request's headers, the key among them.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"unexpected {type(exc).__name__}")
        self.error_class = type(exc).__name__


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
        if self.state == "rejected":
            return f"rejected: recorded on job {self.outcome}"
        if self.state == "duplicate":
            return f"duplicate of job {self.outcome}: not run"
        if self.state == "not_due":
            return f"not due for {self.retry_in_seconds:.2f}s: not run"
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
    #: who holds this attempt's lease: the worker node and a token of this attempt's own
    owner: str = field(default_factory=new_owner)

    @property
    def queue_key(self) -> str:
        return queue_key(self.queue, self.priority)

    def message(self) -> TaskMessage:
        """The message that runs this job again later, built exactly as producers build it."""
        return job_message(self.job_id, self.request, queue=self.queue, priority=self.priority)

    def begin(self, max_attempts: int) -> Begun:
        return self.rt.store.begin(
            self.job_id,
            self.request,
            max_attempts=max_attempts,
            queue=self.queue,
            queue_key=self.queue_key,
            owner=self.owner,
            lease_seconds=self.rt.settings.lease_seconds,
            retention_seconds=self.rt.settings.retention_seconds,
        )

    def defer(self, seconds: float, why: str) -> AttemptResult:
        """Park the job in the delayed set without using an attempt."""
        self.rt.store.defer(self.job_id, delay_seconds=seconds, message=self.message())
        log.debug("job %s deferred %.2fs: %s", self.job_id, seconds, why)
        return AttemptResult(self.job_id, "deferred", None, 0, False, seconds)


@dataclass(frozen=True, slots=True)
class Call:
    """One call to Care360: which attempt it was, when it started, how long it took, how
    much of the budget it leaves (`used`), and whether it probes the open breaker."""

    number: int
    started_at: float
    duration_ms: float
    used: int = 0
    probe: bool = False


def run_attempt(
    rt: Runtime,
    job_id: str,
    request: CancelRequest,
    *,
    queue: str,
    priority: int = 0,
) -> AttemptResult:
    """Ask the gates, begin the attempt under a lease, call Care360 once, record the answer.

    Whatever the call raises, the attempt is recorded and the job moves on (retry, dead,
    settled): only a Redis error leaves this function, for the task to requeue the message.
    """
    ctx = AttemptContext(rt, job_id, request, rt.store.queues.known(queue), priority)
    gated = gate_verdict(ctx, rt.gates)
    if isinstance(gated, AttemptResult):
        return gated
    begun = ctx.begin(RetryPolicy.from_settings(rt.settings).max_attempts)
    if begun.verdict == "run":
        with rt.lease_keeper.hold(job_id, ctx.owner):
            return _call(ctx, begun.attempt, used=begun.used, probe=gated)
    return not_begun(ctx, begun)


def gate_verdict(ctx: AttemptContext, gates: Sequence[Gate]) -> AttemptResult | bool:
    """Ask `gates` in order: the job's result if one of them ends or defers it (already
    recorded), else whether the call probes the open breaker.

    A gate that raises anything but a Redis error defers the job: a failing policy must not
    strand it. A Redis error goes up, for the task to hand the message back.
    """
    try:
        return _ask_gates(ctx, gates)
    except RedisError:
        raise
    except Exception as exc:
        log.warning("job %s: a gate raised %s; deferred", ctx.job_id, type(exc).__name__)
        return ctx.defer(ERROR_DEFER_SECONDS, f"gate error {type(exc).__name__}")


def not_begun(ctx: AttemptContext, begun: Begun) -> AttemptResult:
    """`begin` said no call: settled already, another copy running, a foreign id, or spent."""
    job_id = ctx.job_id
    if begun.verdict == "settled":
        log.info("job %s already %s (%s): not called again", job_id, begun.state, begun.outcome)
        return AttemptResult(job_id, begun.state or "", begun.outcome, begun.attempt, False)
    if begun.verdict == "leased":
        # the same message delivered twice: the other copy's attempt is live; come back after
        return ctx.defer(begun.lease_left + ctx.rt.rand() * LEASE_JITTER_SECONDS,
                         f"attempt {begun.attempt} runs elsewhere (lease live)")
    if begun.verdict == "conflict":
        log.warning("job %s: message names another (case, event); rejected as job %s",
                    job_id, begun.rejected_job)
        return AttemptResult(job_id, "rejected", begun.rejected_job, 0, False)
    if begun.verdict == "duplicate":
        log.info("job %s: a duplicate of job %s (%s), live for the same (case, event): not "
                 "run", job_id, begun.live_job, begun.state)
        return AttemptResult(job_id, "duplicate", begun.live_job, 0, False)
    if begun.verdict == "not_due":
        # a second copy of a waiting job's message: its delayed entry brings it back when due
        log.info("job %s: not due for %.1fs (backoff); this copy is not run", job_id,
                 begun.due_in)
        return AttemptResult(job_id, "not_due", None, begun.attempt, False, begun.due_in)
    max_attempts = RetryPolicy.from_settings(ctx.rt.settings).max_attempts
    return settle_without_call(
        ctx, Outcome.RETRIES_EXHAUSTED, f"all {max_attempts} attempts already used",
        attempts=begun.attempt,
    )


def _ask_gates(ctx: AttemptContext, gates: Sequence[Gate]) -> AttemptResult | bool:
    """The first gate that does not let the call go ahead decides; else whether it probes."""
    probe = False
    for gate in gates:
        verdict = gate.before_call(ctx.job_id, ctx.request, ctx.queue)
        if isinstance(verdict, Defer):
            return ctx.defer(verdict.seconds, verdict.why)
        if isinstance(verdict, EndWithoutCall):
            begun = ctx.begin(max_attempts=0)
            if begun.verdict in ("exhausted", "run"):
                return settle_without_call(ctx, verdict.outcome, verdict.why)
            return not_begun(ctx, begun)
        probe = probe or verdict.probe
    return probe


def _call(ctx: AttemptContext, number: int, *, used: int, probe: bool) -> AttemptResult:
    """Call Care360 once, then judge and record what came back."""
    started_at = time.time()
    t0 = time.perf_counter()
    result: Answer | Exception
    try:
        result = ctx.rt.client.cancel(ctx.request.case_id, ctx.request.event_id)
    except Exception as exc:  # judged below: recorded by class name, never leaves `running`
        result = exc
    call = Call(number, started_at, _ms_since(t0), used, probe)
    return record(ctx.rt, judge(ctx, call, result))


@dataclass(frozen=True, slots=True)
class Finish:
    """What a call's result means for its job, decided before anything is recorded.

    Deciding and recording are apart so that a batch records all its jobs in one round trip
    (`AuditStore.finish_many`) and a single job at once (`record`), by the same rules.
    `announce` logs the outcome once the store says whether it applied.
    """

    call: FinishCall
    result: AttemptResult
    announce: Callable[[bool], None]


def record(rt: Runtime, finish: Finish) -> AttemptResult:
    """Record one decided attempt now, through a short Redis outage (`store.outage`)."""
    applied = until_recorded(lambda: rt.store.apply(finish.call),
                             seconds=rt.settings.lease_seconds, what=f"job {finish.call.job_id}")
    finish.announce(applied)
    return finish.result


def record_all(rt: Runtime, finishes: Sequence[Finish]) -> list[AttemptResult]:
    """Record a batch's decided attempts in one round trip, each still its own script, through
    a short Redis outage (`store.outage`: every finish is safe to repeat)."""
    calls = [finish.call for finish in finishes]
    first = calls[0].job_id if calls else "-"
    applied = until_recorded(lambda: rt.store.finish_many(calls),
                             seconds=rt.settings.lease_seconds,
                             what=f"batch of {len(calls)} (first {first})")
    for finish, done in zip(finishes, applied, strict=True):
        finish.announce(done)
    return [finish.result for finish in finishes]


def judge(ctx: AttemptContext, call: Call, result: Answer | Exception) -> Finish:
    """What an answer (or the exception the call failed with) means for the job.

    Tells the gates (the breaker, the 401 block) at once; writes nothing to the store. Any
    failure, raised or classified, is a retry or the last try, as the retry policy says
    (`retry_policy.RetryPolicy.after_failure`); anything unforeseen is recorded by class name
    (`UnexpectedError`). A failed probe of the open breaker is always retried: it does not
    use the budget.
    """
    answer: Answer | None = None
    error: RetryableError
    if isinstance(result, Answer):
        answer = result
        try:
            outcome = classify(answer)
        except RetryableError as exc:
            error = exc
        except Exception as exc:
            error = UnexpectedError(exc)
        else:
            _notify(ctx.rt, ctx.job_id, answer.status, outcome.value)
            return _after_final(ctx, call, answer, outcome)
    else:
        error = result if isinstance(result, RetryableError) else UnexpectedError(result)
    status = error.status if isinstance(error, TransientResponse) else None
    if not isinstance(error, UnexpectedError):  # the breaker counts Care360's failures only
        _notify(ctx.rt, ctx.job_id, status, None)
    policy = RetryPolicy.from_settings(ctx.rt.settings)
    next_step = policy.after_failure(call.number, call.used, retry_after=error.delay,
                                     spared=call.probe, rand=ctx.rt.rand)
    if isinstance(next_step, Dead):
        return _dead_after_last_try(ctx, call, error, answer)
    return _schedule_retry(ctx, call, error, answer, next_step.delay_seconds)


def _after_final(ctx: AttemptContext, call: Call, answer: Answer, outcome: Outcome) -> Finish:
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
        worker=this_worker(),
    )
    state = "dead" if decision == "dead" else "settled"
    return Finish(
        FinishCall(ctx.job_id, attempt, decision, ctx.owner, outcome.value,
                   retention_seconds=ctx.rt.settings.retention_seconds),
        AttemptResult(ctx.job_id, state, outcome.value, call.number, True),
        lambda applied: _log_outcome(ctx, call, outcome.value, answer.status, applied),
    )


def _dead_after_last_try(
    ctx: AttemptContext, call: Call, exc: RetryableError, answer: Answer | None
) -> Finish:
    exhausted = Outcome.RETRIES_EXHAUSTED.value
    attempt = _transient_attempt(call, exc, answer, verdict=exhausted, delay=None)
    return Finish(
        FinishCall(ctx.job_id, attempt, "dead", ctx.owner, exhausted,
                   retention_seconds=ctx.rt.settings.retention_seconds),
        AttemptResult(ctx.job_id, "dead", exhausted, call.number, True),
        lambda applied: _log_outcome(ctx, call, exhausted, attempt.http_status, applied),
    )


def _schedule_retry(
    ctx: AttemptContext, call: Call, exc: RetryableError, answer: Answer | None, delay: float
) -> Finish:
    """Park the job in the delayed set with the message to push when due (after `delay`,
    the retry policy's); hold nothing."""
    attempt = _transient_attempt(call, exc, answer, verdict="retry", delay=delay)

    def announce(applied: bool) -> None:
        log.info("job %s attempt %d: %s; retry in %.1fs%s", ctx.job_id, call.number, exc, delay,
                 "" if applied else " (stale attempt, not recorded)")

    return Finish(
        FinishCall(ctx.job_id, attempt, "retry", ctx.owner, delay_seconds=delay,
                   retry_message=ctx.message(), spare=call.probe),
        AttemptResult(ctx.job_id, "retrying", None, call.number, True, retry_in_seconds=delay),
        announce,
    )


def _transient_attempt(
    call: Call, exc: RetryableError, answer: Answer | None, *, verdict: str, delay: float | None
) -> Attempt:
    return Attempt(
        number=call.number,
        started_at=call.started_at,
        duration_ms=call.duration_ms,
        http_status=exc.status if isinstance(exc, TransientResponse) else None,
        error_class=exc.error_class if isinstance(exc, UnexpectedError) else type(exc).__name__,
        error=str(exc),
        verdict=verdict,
        retry_in_seconds=delay,
        raw_body=answer.raw_body if answer is not None else None,
        worker=this_worker(),
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
        retention_seconds=ctx.rt.settings.retention_seconds,
        owner=ctx.owner,
    )
    log.info("job %s: %s without a call: %s", ctx.job_id, outcome.value, why)
    state = "dead" if decision == "dead" else "settled"
    return AttemptResult(ctx.job_id, state, outcome.value, attempts, False)


def reject_invalid(
    rt: Runtime, job_id: str, fields: dict[str, str], problem: str, *, queue: str
) -> AttemptResult:
    """A message that fails the contract still gets a record, settled `invalid_request`.

    Only a foreign producer can send one (ours validate first); recording it keeps the
    promise that every accepted message ends in a recorded outcome. If its job id is already
    another job's, it is recorded on a job of its own: it never settles someone else's job.
    """
    queue = rt.store.queues.known(queue)
    recorded_on = rt.store.reject(
        job_id, fields, problem, queue=queue, queue_key=queue_key(queue),
        retention_seconds=rt.settings.retention_seconds,
    )
    if recorded_on != job_id:
        log.warning("job %s: invalid message reusing an existing job id; rejected as job %s",
                    job_id, recorded_on)
    log.info("job %s: invalid_request without a call: %s", recorded_on, problem)
    return AttemptResult(recorded_on, "settled", Outcome.INVALID_REQUEST.value, 0, False)


def _notify(rt: Runtime, job_id: str, status: int | None, outcome: str | None) -> None:
    for gate in rt.gates:
        try:
            gate.after_answer(job_id, status, outcome)
        except Exception:  # a failing policy hook must never lose the recorded outcome
            log.exception("gate %r failed after an answer", gate)


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
