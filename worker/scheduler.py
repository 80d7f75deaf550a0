"""The store's housekeeping thread, one per worker: retries, lost attempts, retention.

- promote: moves retries that are due from the delayed set back onto their queue (one Lua
  script, so any number of these threads can run at once without pushing a job twice); an
  entry naming no queue of ours is set aside (`{prefix}:delayed:bad`) and logged, and the
  rest keep flowing;
- reap: an attempt whose lease expired (its worker died or hung) is closed `WorkerLost` and
  its job retried (or dead-lettered when its budget is spent): no job stays `running`;
- trim: settled and dead jobs past `AUDIT_RETENTION_DAYS` are deleted with their index
  entries, a small batch at a time (with `ARCHIVE_URL` set, only those the archive has
  committed; the step also starts the archiver thread, `worker.archiving`);
- lost messages: every half visibility timeout, a `queued` or `retrying` job whose broker
  message is in no queue, unacked or delayed set is published again from its record
  (`cancelq.store.lost`; one pass at a time across the deployment).

A Redis outage only pauses it: everything is in Redis, and the loop picks up where it left
off when Redis answers again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from celery import bootsteps, signals
from redis.exceptions import RedisError

from cancelq.core.settings import Settings
from cancelq.core.ticker import Ticker
from cancelq.pipeline.retry_policy import RetryPolicy
from cancelq.store.audit import AuditStore
from cancelq.store.lost import find_and_republish
from cancelq.store.messages import priority_of, rerun_message
from worker.archiving import ArchiverThread, start_archiver

log = logging.getLogger("cancelq.scheduler")

BATCH = 500
REAP_BATCH = 100
TRIM_BATCH = 200
TRIM_INTERVAL_SECONDS = 60.0
ERROR_PAUSE_SECONDS = 2.0


def trim_interval(settings: Settings) -> float:
    """Every minute; more often only for a retention of minutes (tests, demos)."""
    retention = settings.retention_seconds
    if retention <= 0:
        return TRIM_INTERVAL_SECONDS
    return min(TRIM_INTERVAL_SECONDS, max(0.5, retention / 4))


class RetryScheduler:
    def __init__(
        self,
        store: AuditStore,
        *,
        interval_seconds: float,
        settings: Settings | None = None,
        trim_interval_seconds: float = TRIM_INTERVAL_SECONDS,
    ) -> None:
        self.store = store
        self.interval = interval_seconds
        self.settings = settings
        self.trim_interval = trim_interval_seconds
        self.moved = 0
        self.bad = 0
        self.reaped = 0
        self.trimmed = 0
        self._next_trim = 0.0
        self._next_lost_pass = 0.0
        self.republished = 0
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        # the loop must outlive any Redis outage: one line, then a pause
        self._ticker = Ticker("retry-scheduler", self.tick, interval=interval_seconds,
                              outage=(RedisError,), pause=ERROR_PAUSE_SECONDS)

    def run_once(self) -> int:
        """Promote every due retry; returns how many were pushed."""
        moved = 0
        while True:
            done = self.store.promote(BATCH)
            moved += done.moved
            for job_id in done.bad:
                self.bad += 1
                log.error("delayed set: the entry of job %s names no queue of ours; moved "
                          "aside to %s", job_id, self.store.keys.delayed_bad)
            if done.seen < BATCH:
                break
        self.moved += moved
        return moved

    def reap_once(self) -> int:
        """Turn attempts whose lease expired into retries; returns how many."""
        if self.settings is None:
            return 0
        reaped = 0
        for job_id in self.store.expired_leases(REAP_BATCH):
            state = self._reap(job_id, self.settings)
            if state is not None:
                reaped += 1
        self.reaped += reaped
        return reaped

    def _reap(self, job_id: str, settings: Settings) -> str | None:
        record = self.store.get(job_id, with_attempts=False)
        if record is None:
            self.store.drop_lease(job_id)
            return None
        [key] = self.store.queue_keys_of([job_id])
        message = rerun_message(record, self.store.queues, priority_of(key))
        policy = RetryPolicy.from_settings(settings)
        state = self.store.reap(job_id, message, max_attempts=policy.max_attempts,
                                delay_seconds=policy.delay(record.attempt_count),
                                retention_seconds=settings.retention_seconds)
        if state is not None:
            log.warning("job %s: attempt %d lost (its lease expired: worker stopped or hung); "
                        "now %s", job_id, record.attempt_count, state)
        return state

    def trim_once(self) -> int:
        """Delete jobs past retention, a batch at a time, until none is due."""
        trimmed = 0
        retention = self.settings.retention_seconds if self.settings is not None else 0
        if not retention:
            return 0
        while True:
            n = self.store.trim(TRIM_BATCH, archived_only=self._archived_only,
                                retention_seconds=retention)
            trimmed += n
            if n < TRIM_BATCH:
                break
        self.trimmed += trimmed
        return trimmed

    @property
    def _archived_only(self) -> bool:
        """With an archive, retention deletes only jobs the archive has committed."""
        return self.settings is not None and self.settings.archive_url is not None

    def tick(self) -> None:
        """One pass of every duty; trimming only every `trim_interval` seconds."""
        self.run_once()
        self.reap_once()
        if time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + self.trim_interval
            if self.trim_once():
                log.info("retention: %d expired jobs trimmed so far", self.trimmed)
        if self.settings is not None and time.monotonic() >= self._next_lost_pass:
            self.lost_pass(self.settings)

    def lost_pass(self, settings: Settings) -> int:
        """Publish again the jobs whose broker message is lost; returns how many."""
        vt = settings.visibility_timeout_seconds
        self._next_lost_pass = time.monotonic() + vt / 2
        done = find_and_republish(self.store, min_age=vt, owner=self._owner)
        if done is None:
            return 0
        self.republished += len(done.republished)
        return len(done.republished)

    def start(self) -> None:
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)


class RetrySchedulerStep(bootsteps.StartStopStep):
    """Runs a `RetryScheduler` for the life of a worker."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.scheduler: RetryScheduler | None = None
        self.archiver: ArchiverThread | None = None

    def start(self, worker: Any) -> None:
        from cancelq.pipeline.runtime import get_runtime

        rt = get_runtime()
        self.scheduler = RetryScheduler(
            rt.store, interval_seconds=rt.settings.scheduler_interval_seconds,
            settings=rt.settings, trim_interval_seconds=trim_interval(rt.settings),
        )
        self.scheduler.start()
        self.archiver = start_archiver(rt.settings, rt.store)

    def stop(self, worker: Any) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.archiver is not None:
            self.archiver.stop()


@signals.worker_shutdown.connect
def _stop_lease_keeper(**_: Any) -> None:
    """Leases are renewed until the last call of the process has ended.

    Steps stop in the reverse order they started, so this step stops *before* the pool waits
    for its running tasks: stopping the lease keeper here let a call in flight during a warm
    shutdown lose its lease, another worker reap and call the job again, and the first
    outcome be thrown away. `worker_shutdown` is sent after the pool has drained.
    """
    from cancelq.pipeline.runtime import built_runtime

    rt = built_runtime()
    if rt is not None:
        rt.lease_keeper.stop()
