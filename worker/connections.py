"""Redis clients for the audit store, built from settings, resilient to restarts.

Socket timeouts, keepalive and health checks are on because a Redis that restarts or fails
over can leave half-open sockets that would otherwise block a caller forever
(CELERY-NOTES.md, "Reconnecting after Redis restarts").
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.audit import AuditStore
from worker.keys import Keys
from worker.settings import Settings

SOCKET_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_INTERVAL_SECONDS = 10
MAX_CONNECTIONS = 200


def redis_client(settings: Settings) -> redis.Redis:
    """A pooled client on `REDIS_URL`; retries a dropped connection with backoff."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        max_connections=MAX_CONNECTIONS,
    )


def audit_store(settings: Settings) -> AuditStore:
    """The audit store on `REDIS_URL` under `KEY_PREFIX`."""
    return AuditStore(redis_client(settings), Keys(settings.key_prefix))
