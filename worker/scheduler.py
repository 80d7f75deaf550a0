"""Moves retries that are due from the store's delayed set back onto their broker queue.

Every worker runs one of these threads; the move is one Lua script, so any number of them
can run at once without pushing a job twice. A Redis outage only pauses it: the delayed
set is in Redis, and the loop picks up where it left off when Redis answers again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.scheduler")

BATCH = 500
ERROR_PAUSE_SECONDS = 2.0


class RetryScheduler:
    def __init__(self, store: AuditStore, *, interval_seconds: float) -> None:
        self.store = store
        self.interval = interval_seconds
        self.moved = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        moved = 0
        while True:
            n = self.store.promote_due(BATCH)
            moved += n
            if n < BATCH:
                break
        self.moved += moved
        return moved

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="retry-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.run_once()
                if moved:
                    log.debug("moved %d due retries to their queues", moved)
            except Exception:  # the loop must outlive any Redis outage
                log.warning("retry scheduler: Redis call failed, will retry", exc_info=True)
                self._stop.wait(ERROR_PAUSE_SECONDS)
                continue
            self._stop.wait(self.interval)


class RetrySchedulerStep(bootsteps.StartStopStep):
    """Runs a `RetryScheduler` for the life of a worker."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.scheduler: RetryScheduler | None = None

    def start(self, worker: Any) -> None:
        from cancelq.pipeline.runtime import get_runtime

        rt = get_runtime()
        self.scheduler = RetryScheduler(
            rt.store, interval_seconds=rt.settings.scheduler_interval_seconds
        )
        self.scheduler.start()

    def stop(self, worker: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
