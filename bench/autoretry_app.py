"""Baseline: the plain Celery way to do the job, a threads task with `autoretry_for`.

    REDIS_URL=... CARE360_BASE_URL=... celery -A bench.autoretry_app worker -c 64

What a Celery user writes without cancelq: one `httpx.Client` per thread, `raise_for_status`,
`autoretry_for` transport and HTTP errors with backoff, the result stored in the Redis result
backend (a `celery-task-meta-*` key per job, the nearest thing to an audit record), and an
INCR of `bench:done` so the benchmark can tell when all jobs are finished. Same broker
choices as cancelq's worker where they matter (threads pool, acks_late, prefetch 1).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
BASE_URL = os.environ.get("CARE360_BASE_URL", "http://127.0.0.1:8099")
DONE_KEY = "bench:done"
QUEUE = "autoretry"

app = Celery("autoretry-baseline", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)
_local = threading.local()
_redis = redis.Redis.from_url(REDIS_URL)


def _client() -> httpx.Client:
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(base_url=BASE_URL, timeout=10,
                              headers={"cv-api-key": os.environ.get("CV_API_KEY", "bench")})
        _local.client = client
    return client


@app.task(name="baseline.autoretry_cancel", autoretry_for=(httpx.HTTPError,),
          retry_backoff=True, retry_kwargs={"max_retries": 8})
def cancel(case_id: str, event_id: str) -> dict[str, Any]:
    response = _client().post(
        f"/api/v1/cases/{case_id}",
        json={"action": "CANCEL_CALENDAR_EVENT", "calendar": {"id": event_id}},
    )
    response.raise_for_status()
    _redis.incr(DONE_KEY)
    return {"status": response.status_code, "body": response.json()}
