"""The worker's own reports: a heartbeat that proves consumption, and its metrics.

A thread of every worker (`TelemetryStep`), every `HEARTBEAT_SECONDS`:

- writes the heartbeat `cancelq health` and `cancelq doctor` read (`cancelq.ops.health`):
  node name, host, pid, threads, queues, when a message was last received (Celery's
  `task_received` signal, sent from the consumer as it takes a message off the broker),
  and how long the oldest Care360 call in flight has run, with the age past which it is
  stuck (the fan-out's deadline plus a margin), so that health fails on stuck calls; the
  settings it runs with (masked: `cancelq doctor` judges those, not its shell's) and
  Care360's verdict on its key, probed once at start (`probe_key`);
- adds this process's call and gate counts to the shared `{prefix}:telemetry` hash, from
  which `cancelq metrics` serves the cluster's totals.

It also wraps the runtime's gates so that calls are timed and deferrals counted
(`cancelq.ops.metrics.instrument_gates`), and, when `WORKER_METRICS_PORT` is set, serves
this process's metrics (the call latency histogram) on that port. A warm shutdown removes
the heartbeat: a worker stopped on purpose is gone, not dead.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps, signals
from redis.exceptions import RedisError

from cancelq.care360.calls import CallWatch
from cancelq.core.settings import Settings
from cancelq.core.ticker import Ticker
from cancelq.ops.doctor import check_care360, effective_settings, key_log_line, key_verdict
from cancelq.ops.health import (
    HEARTBEAT_SECONDS,
    Heartbeat,
    forget_gone,
    remove_heartbeat,
    this_host,
    this_pid,
    write_heartbeat,
)
from cancelq.ops.metrics import WorkerMetrics, instrument_gates, serve, served_url
from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.telemetry")

FORGET_EVERY_BEATS = 300


class Telemetry:
    """The heartbeat loop of one worker process; plain Python, testable without Celery."""

    def __init__(
        self,
        store: AuditStore,
        metrics: WorkerMetrics,
        *,
        node: str,
        concurrency: int,
        queues: tuple[str, ...],
        interval: float = HEARTBEAT_SECONDS,
        watch: CallWatch | None = None,
        settings: dict[str, str | None] | None = None,
    ) -> None:
        self.watch = watch
        self.settings = settings
        #: Care360's verdict on the key, set by the start-up probe (`probe_key`)
        self.key_verdict: str | None = None
        self.store = store
        self.metrics = metrics
        self.node = node
        self.concurrency = concurrency
        self.queues = queues
        self.interval = interval
        self.started_at: float | None = None
        self.received = 0
        self._received_mono: float | None = None
        self._beats = 0
        # the loop must outlive any Redis outage: one line, not a traceback a beat
        self._ticker = Ticker("telemetry", self.beat, interval=self.interval,
                              outage=(RedisError,))

    def on_received(self, **_: Any) -> None:
        """Celery's `task_received` handler: runs in the consumer, so it only notes the time."""
        self._received_mono = time.monotonic()
        self.received += 1
        self.metrics.observe_received()

    def beat(self) -> Heartbeat:
        """Write one heartbeat (times in Redis's clock) and flush the counts."""
        now = self.store.now()
        if self.started_at is None:
            self.started_at = now
        seen = self._received_mono
        watch = self.watch
        oldest = None if watch is None else watch.oldest_call_age()
        heartbeat = Heartbeat(
            node=self.node, host=this_host(), pid=this_pid(), concurrency=self.concurrency,
            queues=self.queues, started_at=self.started_at, at=now,
            consumed_at=None if seen is None else now - (time.monotonic() - seen),
            received=self.received,
            oldest_call_seconds=None if oldest is None else round(oldest, 3),
            stuck_after_seconds=None if watch is None else watch.stuck_after,
            settings=self.settings, key_verdict=self.key_verdict,
        )
        write_heartbeat(self.store, heartbeat)
        self.metrics.flush(self.store)
        self._beats += 1
        if self._beats % FORGET_EVERY_BEATS == 1:
            forget_gone(self.store, now)
        return heartbeat

    def start(self) -> None:
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)
        try:
            self.metrics.flush(self.store)
            remove_heartbeat(self.store, self.node)
        except RedisError as exc:  # shutting down: a Redis that is gone must not block it
            log.warning("telemetry: could not say goodbye to Redis (%s)", type(exc).__name__)


def probe_key(telemetry: Telemetry, settings: Settings) -> None:
    """Ask Care360 about the key as `cancelq doctor` does (a probe that cancels nothing),
    log one line, and publish the verdict with the heartbeat (`cancelq health` reads it).

    A rejected key does not stop the worker: its jobs dead-letter `unauthorized` as before,
    and the recovery is the same; this only makes the first sign come at start."""
    try:
        check = check_care360(settings)
    except Exception as exc:  # a probe must never take the worker down
        log.warning("could not check the API key (%s)", type(exc).__name__)
        return
    telemetry.key_verdict = key_verdict(check)
    line = key_log_line(check)
    if telemetry.key_verdict == "rejected":
        log.error(line)
    elif telemetry.key_verdict == "accepted":
        log.info(line)
    else:
        log.warning(line)


class TelemetryStep(bootsteps.StartStopStep):
    """Runs a `Telemetry` for the life of a worker (after the pool, like the scheduler)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.telemetry: Telemetry | None = None
        self.server: Any = None

    def start(self, worker: Any) -> None:
        from cancelq.pipeline.runtime import get_runtime

        rt = get_runtime()
        metrics = WorkerMetrics()
        rt.gates = instrument_gates(rt.gates, metrics)
        queues = tuple(sorted(worker.app.amqp.queues.consume_from))
        self.telemetry = Telemetry(rt.store, metrics, node=worker.hostname,
                                   concurrency=int(worker.concurrency), queues=queues,
                                   watch=rt.watch, settings=effective_settings(rt.settings))
        signals.task_received.connect(self.telemetry.on_received, weak=False)
        self.telemetry.start()
        threading.Thread(target=probe_key, args=(self.telemetry, rt.settings),
                         name="cancelq-key-probe", daemon=True).start()
        port = rt.settings.worker_metrics_port
        if port:
            self.server = serve(metrics.registry, port, rt.settings.metrics_address)
            log.info("metrics of this worker at %s", served_url(self.server))

    def stop(self, worker: Any) -> None:
        if self.telemetry is not None:
            signals.task_received.disconnect(self.telemetry.on_received)
            self.telemetry.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
