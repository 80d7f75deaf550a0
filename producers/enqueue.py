"""The Python producer API: validate, then record and enqueue in one atomic step.

No Celery `apply_async` here: the job record, the idempotency key and the broker message are
written by one Lua script (`cancelq/store/lua/enqueue.lua`), so a producer that dies half-way leaves
either a queued job with its message or nothing at all.
"""

from __future__ import annotations

import threading
import uuid

from cancelq.core.contract import CancelRequest
from cancelq.core.settings import Settings, load_settings
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.connections import probe
from cancelq.store.messages import job_message
from cancelq.store.records import Enqueued

_default_store: AuditStore | None = None
_lock = threading.Lock()


def default_store(settings: Settings | None = None) -> AuditStore:
    """The process's store on `REDIS_URL`, created on first use.

    Raises `ConfigError` or `RedisUnavailable` (one line naming REDIS_URL) if it cannot be
    used."""
    global _default_store
    if _default_store is None:
        with _lock:
            if _default_store is None:
                settings = settings or load_settings()
                probe(settings)  # a wrong REDIS_URL: one line now, not a hang later
                _default_store = audit_store(settings)
    return _default_store


def enqueue_cancellation(
    case_id: str,
    event_id: str,
    *,
    run_id: str | None = None,
    requested_by: str | None = None,
    reason: str | None = None,
    force: bool = False,
    queue: str | None = None,
    store: AuditStore | None = None,
) -> Enqueued:
    """Ask for one event to be cancelled; returns `Enqueued(job_id, duplicate, state)`.

    Raises `InvalidInput` (naming the field) before touching Redis. A pair that already has
    a live job (queued, running, retrying, dead, or settled `cancelled`/`already_cancelled`)
    returns that job with `duplicate=True` and sends nothing, unless `force`.
    """
    request = CancelRequest.parse(
        case_id=case_id,
        event_id=event_id,
        run_id=run_id,
        requested_by=requested_by,
        reason=reason,
    )
    return submit(request, force=force, queue=queue, store=store)


def submit(
    request: CancelRequest,
    *,
    force: bool = False,
    queue: str | None = None,
    store: AuditStore | None = None,
    priority: int = 0,
) -> Enqueued:
    """Enqueue an already validated request (on the store's real-time queue by default)."""
    store = store or default_store()
    queue = queue or store.queues.realtime
    job_id = str(uuid.uuid4())
    message = job_message(job_id, request, queue=queue, task_id=job_id, priority=priority)
    result = store.enqueue(job_id, request, message, queue=queue, force=force)
    assert result is not None
    return result
