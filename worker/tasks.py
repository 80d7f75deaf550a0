"""The Celery tasks, thin on purpose: each validates its arguments and calls plain functions.

    cancel_calendar_event   one attempt of one job (`cancelq.pipeline.attempt`)
    process_inbox_task      beat's inbox files -> bulk runs (`cancelq.bulk.inbox`)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from cancelq.bulk.inbox import process_inbox
from cancelq.bulk.intake import Limits
from cancelq.core.contract import TASK_NAME, CancelRequest
from cancelq.core.errors import InvalidInput
from cancelq.pipeline.attempt import reject_invalid, run_attempt
from cancelq.pipeline.runtime import Runtime, get_runtime
from cancelq.store.messages import build_task_message
from worker.beat import CLEANUP_TASK
from worker.celery import app

log = logging.getLogger("cancelq.task")

REQUEUE_PAUSE_SECONDS = 1.0
#: a job whose attempt raised something unforeseen comes back after this long
ERROR_RETRY_SECONDS = 5.0


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
    rt = get_runtime()
    delivery = self.request.delivery_info or {}
    # never the message's word for where it goes back to: one of our queues
    queue = rt.store.queues.known(delivery.get("routing_key"))
    priority = _priority(delivery.get("priority"))
    job_id = job_id if isinstance(job_id, str) and job_id else str(self.request.id)
    fields = {"case_id": case_id, "event_id": event_id, "run_id": run_id,
              "requested_by": requested_by, "reason": reason}
    try:
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        request = CancelRequest.parse(**fields)
    except InvalidInput as exc:
        text = {k: str(v) for k, v in fields.items() if isinstance(v, str)}
        return reject_invalid(rt, job_id, text, str(exc), queue=queue).summary()
    try:
        return run_attempt(rt, job_id, request, queue=queue, priority=priority).summary()
    except RedisError as exc:
        # The audit store is unreachable: hand the message back rather than ack it unrecorded.
        log.warning("job %s: audit store unavailable (%s); requeued", job_id, type(exc).__name__)
        time.sleep(REQUEUE_PAUSE_SECONDS)
        raise Reject(str(exc), requeue=True) from None
    except Exception as exc:  # anything else: the job must not stay stuck
        return _after_error(rt, job_id, request, queue, priority, exc)


def _priority(value: object) -> int:
    try:
        return max(0, min(9, int(str(value or 0))))
    except ValueError:
        return 0


def _after_error(
    rt: Runtime, job_id: str, request: CancelRequest, queue: str, priority: int, exc: Exception
) -> str:
    """Something unforeseen escaped the attempt: bring the job back later, never lose it.

    The class name only is logged (a foreign exception's text may carry the request). If
    the attempt had begun, its lease runs out and the reaper makes it a retry; this
    deferral covers a job that had not begun (it would otherwise wait for no message).
    """
    log.error("job %s: unexpected %s; tried again in %.0fs",
              job_id, type(exc).__name__, ERROR_RETRY_SECONDS)
    message = build_task_message(
        {"job_id": job_id, **request.model_dump(exclude_none=True)},
        queue=queue, priority=priority,
    )
    rt.store.defer(job_id, delay_seconds=ERROR_RETRY_SECONDS, message=message)
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
