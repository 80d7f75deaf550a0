"""The one task. Thin on purpose: validate, then hand over to `worker.attempt`."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from worker.attempt import reject_invalid, run_attempt
from worker.celery import app
from worker.contract import TASK_NAME, CancelRequest
from worker.errors import InvalidInput
from worker.runtime import get_runtime
from worker.settings import REALTIME_QUEUE

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
    rt = get_runtime()
    delivery = self.request.delivery_info or {}
    queue = str(delivery.get("routing_key") or REALTIME_QUEUE)
    priority = int(delivery.get("priority") or 0)
    job_id = job_id or str(self.request.id)
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
