"""Prometheus metrics: the cluster's numbers from Redis, and each worker's own.

Two sources, two kinds of target (docs/metrics.md):

- `ClusterCollector`, served by `cancelq metrics`: read at every scrape from what the
  store keeps (the `cancelq stats` snapshot, the queue heads, the heartbeats, the workers'
  shared counters, the auth block, the circuit breaker). One target, right however many
  workers run, and nothing summed twice.
- `WorkerMetrics`, served by a worker when `WORKER_METRICS_PORT` is set: what only the
  process knows, the latency of its calls, as a histogram. It also counts calls by HTTP
  status and gate verdicts (rate-limit deferrals, auth blocks) and hands those counts to
  Redis (`{prefix}:telemetry`) every heartbeat, so that the cluster target has them too.

A worker observes its calls through two `Gate`s it wraps around its own
(`instrument_gates`): gates are asked before every call and told every answer, so no
pipeline code changes. The timed span runs from the last gate's go-ahead to the answer;
it includes the attempt's `begin` on Redis (one script, well under a millisecond here) and,
for a final answer, its `finish`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome, State
from cancelq.ops.health import queue_heads, read_heartbeats
from cancelq.ops.stats import snapshot
from cancelq.pipeline.gates import Defer, EndWithoutCall, Gate, GateVerdict, Proceed
from cancelq.store import telemetry
from cancelq.store.audit import AuditStore

#: Seconds; Care360 answers in tens of ms, a timeout is CARE360_TIMEOUT_SECONDS (10 s).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = ("closed", "open", "half_open")
NO_ANSWER = "none"


# -- per process: the worker ---------------------------------------------------------------


class WorkerMetrics:
    """One worker process's metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)  # its CPU and memory, next to its calls
        self.registry = registry
        self.call_seconds = Histogram(
            "cancelq_call_duration_seconds",
            "Care360 calls made by this process, from go-ahead to answer, by HTTP status",
            ["status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.calls = Counter("cancelq_worker_calls", "Care360 calls made by this process",
                             ["status"], registry=self.registry)
        self.verdicts = Counter("cancelq_worker_gate_verdicts",
                                "Jobs a gate held back in this process (defer, end)",
                                ["gate", "verdict"], registry=self.registry)
        self.received = Counter("cancelq_worker_messages_received",
                                "Broker messages this process received", registry=self.registry)
        self.last_received = Gauge("cancelq_worker_last_received_timestamp_seconds",
                                   "When this process last received a message (Unix time)",
                                   registry=self.registry)
        self._lock = threading.Lock()
        self._pending: Tally[str] = Tally()

    def observe_call(self, status: int | None, seconds: float | None) -> None:
        label = NO_ANSWER if status is None else str(status)
        self.calls.labels(label).inc()
        if seconds is not None:
            self.call_seconds.labels(label).observe(seconds)
        self._add(f"calls:{label}")

    def observe_verdict(self, gate: str, verdict: str) -> None:
        self.verdicts.labels(gate, verdict).inc()
        self._add(f"gate:{gate}:{verdict}")

    def observe_received(self) -> None:
        self.received.inc()
        self.last_received.set(time.time())

    def _add(self, field: str) -> None:
        with self._lock:
            self._pending[field] += 1

    def flush(self, store: AuditStore) -> int:
        """Add the counts gathered since the last flush to the shared hash; kept on failure."""
        with self._lock:
            pending, self._pending = self._pending, Tally()
        if not pending:
            return 0
        try:
            telemetry.add_counts(store, pending)
        except redis.RedisError:
            with self._lock:
                self._pending.update(pending)
            raise
        return sum(pending.values())


def gate_name(gate: object) -> str:
    """`RateLimitGate` -> `rate_limit`, `AuthGate` -> `auth`."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", type(gate).__name__).lower()
    return words.removesuffix("_gate") or words


#: calls timed at once at most (a worker's in-flight calls; entries of calls never made)
MAX_TIMED = 10_000


class CountingGate:
    """A `Gate` around another: counts the jobs it defers or ends, changes nothing."""

    def __init__(self, inner: Gate, metrics: WorkerMetrics) -> None:
        self.inner = inner
        self.name = gate_name(inner)
        self.metrics = metrics
        self.per_batch = inner.per_batch

    def __repr__(self) -> str:
        return f"CountingGate({self.inner!r})"

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        verdict = self.inner.before_call(job_id, request, queue)
        if isinstance(verdict, Defer):
            self.metrics.observe_verdict(self.name, "defer")
        elif isinstance(verdict, EndWithoutCall):
            self.metrics.observe_verdict(self.name, "end")
        return verdict

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        self.inner.after_answer(job_id, status, outcome)


class CallTimer:
    """The last `Gate`: starts the clock on the go-ahead, stops it on the answer.

    Per job, not per thread: a batch has many calls in flight on one thread. A go-ahead that
    leads to no call (the job was already settled) leaves an entry that the next go-ahead
    for that job overwrites; the table is bounded by `MAX_TIMED` all the same.
    """

    per_batch = False  # every call is timed

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "CallTimer()"

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        with self._lock:
            if len(self._started) >= MAX_TIMED:
                self._started.clear()
            self._started[job_id] = time.perf_counter()
        return Proceed()

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        with self._lock:
            started = self._started.pop(job_id, None)
        seconds = None if started is None else time.perf_counter() - started
        self.metrics.observe_call(status, seconds)


def instrument_gates(gates: Sequence[Gate], metrics: WorkerMetrics) -> tuple[Gate, ...]:
    """The same gates, counted, with the timer last (idempotent)."""
    plain = [g.inner if isinstance(g, CountingGate) else g for g in gates
             if not isinstance(g, CallTimer)]
    return (*(CountingGate(g, metrics) for g in plain), CallTimer(metrics))


# -- cluster-wide: one target ----------------------------------------------------------------


class ClusterCollector(Collector):
    """Reads Redis at every scrape; a Redis that does not answer gives `cancelq_redis_up 0`."""

    def __init__(self, store: AuditStore, queues: Sequence[str] | None = None) -> None:
        self.store = store
        self.queues = store.queues.all if queues is None else tuple(queues)

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not touch Redis

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("cancelq_redis_up", "1 if the audit store's Redis answered")
        try:
            families = list(self._families())
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        store = self.store
        snap = snapshot(store, queues=self.queues)
        now = snap.taken_at
        yield from _job_families(snap.states, snap.outcomes, snap.jobs, snap.attempts,
                                 snap.replays)
        heads = queue_heads(store, now, self.queues)
        depth = GaugeMetricFamily("cancelq_queue_depth", "Messages ready in the queue",
                                  labels=["queue"])
        age = GaugeMetricFamily(
            "cancelq_queue_oldest_age_seconds",
            "How long the job at the head of the queue has waited (0: empty; NaN: unknown)",
            labels=["queue"])
        for q in snap.queues:
            depth.add_metric([q.name], q.ready)
            head_age = heads[q.name].age_seconds
            age.add_metric([q.name], head_age if head_age is not None
                           else (0.0 if q.ready == 0 else math.nan))
        yield depth
        yield age
        yield _gauge("cancelq_retries_waiting",
                     "Jobs in the delayed set: retries and deferrals not yet due", snap.delayed)
        yield _gauge("cancelq_unacked_messages", "Messages workers hold, not yet acknowledged",
                     snap.unacked)
        yield _gauge("cancelq_dead_letters", "Jobs now dead (dead-letter list)",
                     snap.dead_letters)
        blocked = snap.auth_blocked_seconds
        yield _gauge("cancelq_auth_blocked", "1 while calls are paused after a 401",
                     0 if blocked is None else 1)
        yield _gauge("cancelq_auth_block_remaining_seconds",
                     "Seconds left on the 401 block (-1: until cleared; 0: none)",
                     0 if blocked is None else blocked)
        calls = GaugeMetricFamily("cancelq_calls_last_minute",
                                  "Calls to Care360 in the last 60 s, by HTTP status",
                                  labels=["status"])
        for status, count in snap.calls_last_minute.items():
            calls.add_metric([status], count)
        yield calls
        yield from self._shared_families(now, snap.breaker.state)
        yield from _archive_families(store, now)

    def _shared_families(self, now: float, breaker_state: str) -> Iterator[Metric]:
        state = GaugeMetricFamily("cancelq_breaker_state",
                                  "The shared circuit breaker: 1 for its current state",
                                  labels=["state"])
        for name in BREAKER_STATES:
            state.add_metric([name], 1 if breaker_state == name else 0)
        yield state
        yield from _telemetry_families(telemetry.read_counts(self.store))
        booked = telemetry.bulk_turns_booked_until(self.store)
        yield _gauge("cancelq_rate_limit_bulk_backlog_seconds",
                     "How far ahead the rate limit has booked deferred bulk turns",
                     max(0.0, booked - now) if booked is not None else 0.0)
        beats = read_heartbeats(self.store)
        online = GaugeMetricFamily("cancelq_worker_online", "1 if the worker's heartbeat is "
                                   "recent", labels=["node"])
        idle = GaugeMetricFamily("cancelq_worker_idle_seconds",
                                 "Since the worker last received a message", labels=["node"])
        for beat in beats:
            online.add_metric([beat.node], 1 if beat.online(now) else 0)
            idle.add_metric([beat.node], beat.idle_seconds(now))
        yield online
        yield idle
        yield _gauge("cancelq_workers_online", "Workers with a recent heartbeat",
                     sum(1 for b in beats if b.online(now)))


def _archive_families(store: AuditStore, now: float) -> Iterator[Metric]:
    """The archive's backlog, from Redis's pending set (with ARCHIVE_URL: jobs not yet
    archived; without, settled jobs still in retention, which nobody archives)."""
    pending, oldest = store.archive_backlog()
    yield _gauge("cancelq_archive_pending", "Settled and dead jobs not yet in the archive",
                 pending)
    yield _gauge("cancelq_archive_oldest_pending_age_seconds",
                 "Since the oldest job not yet archived ended (0: none waiting)",
                 max(0.0, now - oldest) if oldest is not None else 0.0)


def _job_families(
    states: dict[str, int], outcomes: dict[str, int], jobs: int, attempts: int, replays: int
) -> Iterator[Metric]:
    by_state = GaugeMetricFamily("cancelq_jobs", "Jobs now in each state", labels=["state"])
    for state in State:
        by_state.add_metric([state.value], states.get(state.value, 0))
    yield by_state
    by_outcome = GaugeMetricFamily(
        "cancelq_job_outcomes",
        "Jobs that ended with each outcome (a replay takes a dead job out again)",
        labels=["outcome"])
    for outcome in sorted({o.value for o in Outcome} | set(outcomes)):
        by_outcome.add_metric([outcome], outcomes.get(outcome, 0))
    yield by_outcome
    yield _counter("cancelq_jobs_created", "Jobs ever created", jobs)
    yield _counter("cancelq_attempts", "Attempts recorded (calls to Care360)", attempts)
    yield _counter("cancelq_replays", "Dead jobs replayed", replays)


def _telemetry_families(fields: dict[str, str]) -> Iterator[Metric]:
    calls = CounterMetricFamily("cancelq_calls", "Calls to Care360 by all workers, by HTTP "
                                "status", labels=["status"])
    verdicts = CounterMetricFamily("cancelq_gate_verdicts", "Jobs gates held back, by gate "
                                   "and verdict (defer: back later, end: no call)",
                                   labels=["gate", "verdict"])
    deferrals = 0
    for field, value in sorted(fields.items()):
        kind, _, rest = field.partition(":")
        if kind == "calls" and rest:
            calls.add_metric([rest], int(value))
        elif kind == "gate" and rest.count(":") == 1:
            gate, verdict = rest.split(":")
            verdicts.add_metric([gate, verdict], int(value))
            if gate == "rate_limit" and verdict == "defer":
                deferrals = int(value)
    yield calls
    yield verdicts
    yield _counter("cancelq_rate_limit_deferrals", "Jobs the rate limit deferred", deferrals)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def cluster_registry(store: AuditStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(store))
    return registry


def serve(registry: CollectorRegistry, port: int, addr: str) -> WSGIServer:
    """Serve `registry` at http://addr:port/metrics from a daemon thread (port 0: any free).

    No default address: the caller passes `Settings.metrics_address` (loopback unless set)
    or an explicit option, so nothing listens wider than the operator said.
    """
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def served_url(server: WSGIServer) -> str:
    """The address the server really listens on, as a URL (an IPv6 host in brackets)."""
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
