"""A Celery task message exactly as kombu's Redis transport stores it in a queue list.

Building the message ourselves lets one Lua script record a job *and* push its message in a
single atomic step (no job without a message, no message without a record), and lets bulk
intake pipeline thousands of them (an `apply_async` loop manages ~1,700/s here; a pipelined
LPUSH ~100,000/s). The format is Celery protocol 2 over kombu's virtual transport:
`tests/store/test_messages.py` checks it field by field against what `apply_async` writes.

The anonymous exchange is used on purpose: when kombu restores an unacked message after a
worker dies, it routes it by `routing_key` alone, with no dependence on exchange bindings.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from cancelq.core.contract import TASK_NAME
from cancelq.store.queues import (
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    Queues,
    queue_key,
)
from cancelq.store.records import JobRecord

#: The queues this deployment consumes: the only ones a job is ever pushed back to.

_ORIGIN = f"cancelq@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A serialized message and the Redis list it belongs in."""

    queue_key: str
    payload: str
    task_id: str


def kwargs_repr(kwargs: dict[str, Any]) -> str:
    """What Flower shows: ids and provenance, and only them (never a secret, never reason)."""
    shown = {k: kwargs[k] for k in ("job_id", "case_id", "event_id", "run_id") if kwargs.get(k)}
    return repr(shown)


def build_task_message(
    kwargs: dict[str, Any],
    *,
    queue: str,
    task_id: str | None = None,
    priority: int = 0,
) -> TaskMessage:
    task_id = task_id or str(uuid.uuid4())
    body = json.dumps([[], kwargs, _EMBED], separators=(",", ":")).encode()
    headers: dict[str, Any] = {
        "lang": "py",
        "task": TASK_NAME,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": kwargs_repr(kwargs),
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return TaskMessage(
        queue_key=queue_key(queue, priority),
        payload=json.dumps(message, separators=(",", ":")),
        task_id=task_id,
    )


def priority_of(key: str | None) -> int:
    """The priority step of a queue list's name (0 for the plain queue or anything odd)."""
    if not key or PRIORITY_SEPARATOR not in key:
        return 0
    step = key.rsplit(PRIORITY_SEPARATOR, 1)[1]
    return int(step) if step.isdigit() and int(step) in PRIORITY_STEPS else 0


def job_message(record: JobRecord, queues: Queues, priority: int = 0) -> TaskMessage:
    """A fresh message that runs the recorded job again, on its own (known) queue."""
    kwargs: dict[str, Any] = {"job_id": record.job_id, "case_id": record.case_id,
                              "event_id": record.event_id}
    for name in ("run_id", "requested_by", "reason"):
        value = getattr(record, name)
        if value:
            kwargs[name] = value
    return build_task_message(kwargs, queue=queues.known(record.queue), priority=priority)
