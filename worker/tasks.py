"""The Celery tasks, thin on purpose: each validates its arguments and calls plain functions.

    cancel_calendar_event   one attempt of one job (`cancelq.pipeline.attempt`)
    cancel_calendar_events  one attempt of each job of a bulk batch (`cancelq.pipeline.batch`)
    process_inbox_task      beat's inbox files -> bulk runs (`cancelq.bulk.inbox`)
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from cancelq.bulk.inbox import process_inbox
from cancelq.bulk.intake import Limits
from cancelq.core.contract import (
    BATCH_TASK_NAME,
    TASK_NAME,
    CancelRequest,
    Submitted,
    job_id_of,
    read_batch,
    read_job,
)
from cancelq.core.errors import InvalidInput
from cancelq.pipeline.attempt import AttemptResult, reject_invalid, run_attempt
from cancelq.pipeline.batch import run_batch
from cancelq.pipeline.retry_policy import ERROR_DEFER_SECONDS
from cancelq.pipeline.runtime import Runtime, get_runtime
from cancelq.store.messages import job_message
from cancelq.store.poison import is_poison
from worker.beat import CLEANUP_TASK
from worker.celery import app

log = logging.getLogger("cancelq.task")

REQUEUE_PAUSE_SECONDS = 1.0


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def cancel_calendar_event(
    self: Task[Any, Any],
    /,
    job_id: str | None = None,
    case_id: str | None = None,
    event_id: str | None = None,
    run_id: str | None = None,
    requested_by: str | None = None,
    reason: str | None = None,
    **unknown: Any,
) -> str:
    """One job (real-time, retries, replays, foreign producers): one attempt."""
    rt = get_runtime()
    queue, priority = _origin(rt, self)
    fields = {"case_id": case_id, "event_id": event_id, "run_id": run_id,
              "requested_by": requested_by, "reason": reason}
    job = read_job(job_id, fields, unknown, fallback=str(self.request.id))
    job_id, request = job.job_id, job.request  # an id safe to build keys from
    try:
        if request is None:  # recorded, refused: every accepted message ends recorded
            return reject_invalid(rt, job_id, job.fields, job.problem or "",
                                  queue=queue).summary()
        return run_attempt(rt, job_id, request, queue=queue, priority=priority).summary()
    except RedisError as exc:  # not recorded yet: handed back, or set aside if it never can be
        return _not_recorded(rt, self, f"job {job_id}", exc)
    except Exception as exc:  # anything else: the job must not stay stuck
        return _after_error(rt, [] if request is None else [(job_id, request)], queue,
                            priority, exc)


@app.task(name=BATCH_TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def cancel_calendar_events(
    self: Task[Any, Any],
    /,
    jobs: object = None,
    run_id: str | None = None,
    requested_by: str | None = None,
    **unknown: Any,
) -> str:
    """Many bulk jobs in one message (`cancelq.pipeline.batch`): one attempt each, at once."""
    rt = get_runtime()
    queue, priority = _origin(rt, self)
    batch_id, _ = job_id_of(None, str(self.request.id))  # a key may be built from it
    submitted: list[Submitted] = []
    problem = ""
    try:
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        submitted = read_batch(jobs, {"run_id": run_id, "requested_by": requested_by}, batch_id)
    except InvalidInput as exc:  # nothing to run: the message itself is recorded, refused
        problem = str(exc)
    valid = [(job.job_id, job.request) for job in submitted if job.request is not None]
    try:
        if problem:
            return reject_invalid(rt, batch_id, {}, problem, queue=queue).summary()
        for job in submitted:
            if job.request is None:
                reject_invalid(rt, job.job_id, job.fields, job.problem or "", queue=queue)
        results = run_batch(rt, valid, rt.batch_caller, queue=queue, priority=priority)
    except RedisError as exc:  # the batch is handed back whole; recorded jobs are not redone
        return _not_recorded(rt, self, f"batch {batch_id}", exc)
    except Exception as exc:  # anything else: no job of the batch may stay stuck
        return _after_error(rt, valid, queue, priority, exc)
    return _tally(results, refused=len(submitted) - len(valid))


def _origin(rt: Runtime, task: Task[Any, Any]) -> tuple[str, int]:
    """The queue and priority the message came from: never the message's word for where it
    goes back to, always one of our queues."""
    delivery = task.request.delivery_info or {}
    return rt.store.queues.known(delivery.get("routing_key")), _priority(delivery.get("priority"))


def _not_recorded(rt: Runtime, task: Task[Any, Any], what: str, exc: RedisError) -> str:
    """Redis did not record the message. Away (connection, timeout, failover): hand it back.
    It refused this message's own command (WRONGTYPE, a script error): that will not change
    on redelivery, so the message is set aside with one log line, never requeued in a loop.
    """
    if not is_poison(exc):
        _requeue(what, exc)
    reason = " ".join(str(exc).split())[:160]  # one line
    body = json.dumps({"task": task.name, "kwargs": task.request.kwargs, "error": reason,
                       "at": time.time()}, default=str)
    try:
        rt.store.set_aside(str(task.request.id), body)
    except RedisError as again:
        if not is_poison(again):
            _requeue(what, again)
        log.error("%s: Redis refused it for good (%s) and refused to set it aside (%s); "
                  "dropped", what, reason, type(again).__name__)
        return f"dropped: {type(exc).__name__}"
    log.error("%s: Redis refused it for good (%s); set aside in %s, not requeued",
              what, reason, rt.store.keys.poison)
    return f"set aside: {type(exc).__name__}"


def _requeue(what: str, exc: RedisError) -> NoReturn:
    """The audit store is unreachable: hand the message back rather than ack it unrecorded."""
    log.warning("%s: audit store unavailable (%s); requeued", what, type(exc).__name__)
    time.sleep(REQUEUE_PAUSE_SECONDS)
    raise Reject(str(exc), requeue=True) from None


def _tally(results: list[AttemptResult], *, refused: int) -> str:
    """What Flower shows for a batch: how many jobs ended how."""
    counts = Counter(result.outcome or result.state for result in results)
    if refused:
        counts["refused"] += refused
    parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{len(results) + refused} jobs: {parts}"


def _priority(value: object) -> int:
    try:
        return max(0, min(9, int(str(value or 0))))
    except ValueError:
        return 0


def _after_error(
    rt: Runtime, jobs: list[tuple[str, CancelRequest]], queue: str, priority: int,
    exc: Exception,
) -> str:
    """Something unforeseen escaped the attempt: bring the jobs back later, never lose one.

    The class name only is logged (a foreign exception's text may carry the request). If
    an attempt had begun, its lease runs out and the reaper makes it a retry; this deferral
    covers a job that had not begun (it would otherwise wait for no message); a job already
    settled is left as it is (`defer` does nothing to it).
    """
    log.error("%d job(s) (first %s): unexpected %s; tried again in %.0fs",
              len(jobs), jobs[0][0] if jobs else "-", type(exc).__name__, ERROR_DEFER_SECONDS)
    for job_id, request in jobs:
        message = job_message(job_id, request, queue=queue, priority=priority)
        rt.store.defer(job_id, delay_seconds=ERROR_DEFER_SECONDS, message=message)
    return f"error: {type(exc).__name__}"


@app.task(name=CLEANUP_TASK, acks_late=True, ignore_result=True)
def process_inbox_task(inbox: str | None = None) -> list[dict[str, Any]]:
    """Beat's entry point: run `CLEANUP_INBOX`, and only it.

    Anyone who can send a message could otherwise point the worker at any directory it can
    read; `inbox`, if given at all, must name `CLEANUP_INBOX` itself.
    """
    rt = get_runtime()
    root = rt.settings.cleanup_inbox
    if root is None:
        log.warning("cleanup: CLEANUP_INBOX is not set; nothing to do")
        return []
    if inbox is not None and Path(inbox).resolve() != root.resolve():
        log.warning("cleanup: refused: the task only runs CLEANUP_INBOX, not %r", inbox[:200])
        return []
    results = process_inbox(rt.store, root, limits=Limits.from_settings(rt.settings))
    return [result.to_json() for result in results]
