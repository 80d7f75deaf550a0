"""Baseline for bench/retry_memory.py: the Celery-native way, `self.retry(countdown=...)`.

Same broker settings as ours (threads pool, acks_late, prefetch 1); each retry is an ETA
message that the worker fetches at once and holds in RAM until due.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

app = Celery("countdown-baseline", broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    task_ignore_result=True,
    broker_transport_options={"visibility_timeout": 3600},
    task_default_queue="baseline",
)


@app.task(name="baseline.cancel", bind=True, max_retries=None)
def cancel(
    self: Task[Any, Any], /, job_id: str, case_id: str, event_id: str, fail: bool = True
) -> None:
    if fail:
        raise self.retry(countdown=600)
