"""Celery's settings, derived from `cancelq.core.settings.Settings`: nothing here is read twice.

Why these choices:
- threads pool: the work is one HTTP call; threads are cheap and the Care360 client keeps
  one connection pool per thread. It has no child to lose, so a worker killed mid-call
  leaves its messages unacked until the visibility timeout, when kombu redelivers them.
- acks_late + prefetch multiplier 1: a message is acknowledged only after its outcome is
  recorded, and a worker reserves no more messages than it has threads.
- the unacked sweep is derived from the visibility timeout, so recovery after a crash
  takes the timeout plus at most a tenth of it (kombu scans every interval x throttle).
- JSON only, no results stored (the audit store is the record), retries in our own store.
"""

from __future__ import annotations

import sys as _sys
from typing import Any, NoReturn

from kombu import Queue

from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from cancelq.store.connections import is_sentinel_url as _is_sentinel_url
from cancelq.store.queues import Queues


def _refuse(exc: ConfigError) -> NoReturn:
    """One line on stderr and exit 2 (a usage/config error), never a traceback."""
    print(f"cancelq: configuration error: {exc}", file=_sys.stderr, flush=True)
    raise SystemExit(2) from None


try:
    _settings = load_settings()
except ConfigError as _exc:
    _refuse(_exc)

_vt = _settings.visibility_timeout_seconds
_restore_interval = max(1, min(10, int(_vt / 10)))

broker_url = _settings.redis_url
# kombu's Redis transport whose fetch records a message unacked in the same atomic step that
# takes it off its list (worker/transport.py): a SIGKILLed worker can no longer lose one.
broker_transport = (
    "worker.transport:SentinelTransport"
    if _is_sentinel_url(_settings.redis_url)
    else "worker.transport:Transport"
)
result_backend = _settings.redis_url
_transport_options: dict[str, Any] = {
    "visibility_timeout": _vt,
    "unacked_restore_interval": _restore_interval,
    "unacked_restore_throttle": 1,
    "socket_keepalive": True,
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
    "retry_on_timeout": True,
}
if _settings.redis_sentinel_master:
    _transport_options["master_name"] = _settings.redis_sentinel_master
broker_transport_options = _transport_options
result_backend_transport_options = dict(_transport_options)
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
redis_backend_health_check_interval = 10
redis_socket_keepalive = True
result_backend_always_retry = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
task_ignore_result = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_pool = "threads"
worker_concurrency = _settings.worker_concurrency

# Named from the deployment's prefix (cancelq.store.queues): two deployments on one Redis
# database each consume only their own queues.
_queues = Queues.from_settings(_settings)
task_queues = tuple(Queue(name) for name in _queues.all)
task_default_queue = _queues.realtime
task_create_missing_queues = False

task_publish_retry_policy = {
    "max_retries": 20,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 3,
}

worker_hijack_root_logger = True
worker_redirect_stdouts = False

# Flower (docs/operations.md): every job's life as task events. Producers push raw messages
# (cancelq.store.messages), so there is no task-sent event; received/started/succeeded carry the
# message's argsrepr/kwargsrepr (ids only) and the task's result is the outcome summary.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

# Priority (docs/bulk.md): real-time first. A worker BRPOPs its queues in one call, and Redis
# answers from the first non-empty list named: "priority" keeps task_queues' order (real-time,
# then bulk) on every fetch, where the default round_robin rotates it. kombu 5.7 keeps the
# active queues in order (a set made this arbitrary up to 5.6.2: kombu#801). With prefetch
# disabled (5.6+, Redis only) a worker fetches only when a thread is free, so a real-time job
# waits behind at most the calls already in flight, never behind reserved bulk messages.
broker_transport_options["queue_order_strategy"] = "priority"
worker_disable_prefetch = True

# Scheduled cleanup (docs/bulk.md, cancelq/bulk/inbox.py): `celery -A worker beat` with
# celery-redbeat, whose Redis lock lets one beat send while the others stand by, however many
# run. The standby retries the lock every beat_max_loop_interval seconds; the lock lives
# 5 x that, so a dead beat's place is taken within about half a minute.
try:
    from cancelq.store.keys import Keys
    from worker.beat import beat_schedule as _beat_schedule

    beat_schedule = _beat_schedule(_settings)
except ConfigError as _exc:
    _refuse(_exc)
beat_scheduler = "redbeat.RedBeatScheduler"
beat_max_loop_interval = 5
redbeat_key_prefix = Keys(_settings.key_prefix).redbeat + ":"  # c360:redbeat:*
redbeat_redis_url = _settings.redis_url
if _settings.redis_sentinel_master:
    from cancelq.store.connections import parse_sentinel_url as _parse_sentinel_url

    _sentinel = _parse_sentinel_url(_settings.redis_url)
    redbeat_redis_url = "redis-sentinel://"
    redbeat_redis_options = {
        "sentinels": list(_sentinel.hosts),
        "service_name": _settings.redis_sentinel_master,
        "db": _sentinel.db,
        "password": _sentinel.password,
        "socket_timeout": 5,
    }
