"""The process-wide `Runtime` (settings, audit store, Care360 client), built once, lazily.

Lazily, because a prefork child must build its own connections after the fork, and
because importing the task module (Flower, beat, the CLI) must not need the API key.
"""

from __future__ import annotations

import threading

from worker.attempt import Runtime
from worker.care360 import Care360Client
from worker.connections import audit_store
from worker.settings import Settings, load_settings

_lock = threading.Lock()
_runtime: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    return Runtime(
        settings=settings,
        store=audit_store(settings),
        client=Care360Client(
            settings.care360_base_url,
            settings.require_api_key(),
            timeout_seconds=settings.timeout_seconds,
        ),
    )


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(load_settings())
    return _runtime
