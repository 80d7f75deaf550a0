"""Metrics (`cancelq.ops.metrics`): the worker's own and the cluster collector, on fakeredis.

Everything is read back the way Prometheus reads it: the exposition text, parsed with
`prometheus_client.parser`. The scrape over HTTP of a real worker and of `cancelq metrics`
is tests/integration/test_metrics.py.
"""

from __future__ import annotations

import math
import uuid

import fakeredis
import httpx
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome
from cancelq.ops.metrics import (
    CallTimer,
    CountingGate,
    WorkerMetrics,
    cluster_registry,
    gate_name,
    instrument_gates,
    serve,
)
from cancelq.pipeline.gates import Defer, EndWithoutCall, Gate, GateVerdict, Proceed
from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from cancelq.store.messages import build_task_message
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE

REQUEST = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, keyed by (name, sorted labels)."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class RateLimitGate:
    """A stand-in with the real gate's class name: defers every other job."""

    def __init__(self) -> None:
        self.n = 0
        self.answers: list[int | None] = []

    per_batch = False

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        self.n += 1
        return Defer(0.1, "busy") if self.n % 2 == 0 else Proceed()

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        self.answers.append(status)


class AuthGate:
    per_batch = False

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        return EndWithoutCall(Outcome.UNAUTHORIZED, "blocked")

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        pass


def run(gates: tuple[Gate, ...], job_id: str, status: int | None) -> bool:
    """What `run_attempt` does with gates: ask each, stop at the first hold, tell the answer."""
    for gate in gates:
        if not isinstance(gate.before_call(job_id, REQUEST, REALTIME_QUEUE), Proceed):
            return False
    for gate in gates:
        gate.after_answer(job_id, status, None)
    return True


def test_gate_names() -> None:
    assert gate_name(RateLimitGate()) == "rate_limit"
    assert gate_name(AuthGate()) == "auth"


def test_instrumented_gates_count_holds_time_calls_and_change_nothing() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    inner = RateLimitGate()
    gates = instrument_gates((inner,), metrics)
    assert [type(g) for g in gates] == [CountingGate, CallTimer]
    assert instrument_gates(gates, metrics)[0].inner is inner  # type: ignore[attr-defined]
    called = [run(gates, f"j{i}", status) for i, status in enumerate([200, 200, 503, 400, None])]
    assert called == [True, False, True, False, True]  # every other one deferred
    assert inner.answers == [200, 503, None]  # the wrapped gate still hears every answer
    got = samples(metrics.registry)
    assert got[("cancelq_worker_gate_verdicts_total", (("gate", "rate_limit"),
                                                        ("verdict", "defer")))] == 2
    for status in ("200", "503", "none"):
        assert got[("cancelq_worker_calls_total", (("status", status),))] == 1
        assert got[("cancelq_call_duration_seconds_count", (("status", status),))] == 1
    assert ("cancelq_worker_calls_total", (("status", "400"),)) not in got


def test_an_end_without_call_is_counted_and_no_call_is_timed() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    gates = instrument_gates((AuthGate(),), metrics)
    assert not run(gates, "j1", 401)
    got = samples(metrics.registry)
    assert got[("cancelq_worker_gate_verdicts_total", (("gate", "auth"), ("verdict", "end")))] == 1
    assert not any(name == "cancelq_call_duration_seconds_count" for name, _ in got)


def test_flush_adds_counts_to_the_shared_hash_and_keeps_them_on_failure() -> None:
    server = fakeredis.FakeServer()
    fake_redis = fakeredis.FakeRedis(server=server, decode_responses=True)
    metrics = WorkerMetrics(CollectorRegistry())
    store = AuditStore(fake_redis, Keys("t"))
    for status in (200, 200, None):
        metrics.observe_call(status, 0.01)
    metrics.observe_verdict("rate_limit", "defer")
    assert metrics.flush(store) == 4
    assert fake_redis.hgetall("t:telemetry") == {"calls:200": "2", "calls:none": "1",
                                                 "gate:rate_limit:defer": "1"}
    assert metrics.flush(store) == 0  # nothing new: nothing added twice
    metrics.observe_call(200, 0.01)
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        metrics.flush(store)
    server.connected = True
    assert metrics.flush(store) == 1
    assert fake_redis.hget("t:telemetry", "calls:200") == "3"


def seed(store: AuditStore) -> None:
    """Four messages (two per queue), counters of one dead job, telemetry, a block, a breaker."""
    now = float(store.redis.time()[0])
    ages = ((REALTIME_QUEUE, 30), (REALTIME_QUEUE, 5), (BULK_QUEUE, 70), (BULK_QUEUE, 1))
    for queue, age in ages:
        job_id = str(uuid.uuid4())
        message = build_task_message({"job_id": job_id}, queue=queue, task_id=job_id)
        request = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))
        store.enqueue(job_id, request, message, queue=queue, now=now - age)
    dead = str(store.redis.zrange(store.keys.index_state("queued"), 0, 0)[0])
    store.redis.hset(store.keys.stats, mapping={"state:queued": 3, "state:dead": 1,
                                                "outcome:retries_exhausted": 1})
    store.redis.zadd(store.keys.delayed, {dead: now + 60})
    store.redis.zadd(store.keys.archive_pending, {dead: now - 90})  # ended, not archived
    store.redis.hset(store.keys.telemetry, mapping={"calls:200": 7, "calls:503": 2,
                                                    "gate:rate_limit:defer": 11})
    store.redis.set(store.keys.auth_blocked, "{}", ex=30)
    store.redis.hset(store.keys.breaker, mapping={"state": "open", "opened_at": "1"})


def test_the_cluster_collector_reads_the_store(fake_store: AuditStore) -> None:
    seed(fake_store)
    got = samples(cluster_registry(fake_store))
    assert got[("cancelq_redis_up", ())] == 1
    assert got[("cancelq_jobs", (("state", "queued"),))] == 3
    assert got[("cancelq_jobs", (("state", "dead"),))] == 1
    assert got[("cancelq_dead_letters", ())] == 1
    assert got[("cancelq_job_outcomes", (("outcome", "retries_exhausted"),))] == 1
    assert got[("cancelq_job_outcomes", (("outcome", "cancelled"),))] == 0
    assert got[("cancelq_jobs_created_total", ())] == 4
    assert got[("cancelq_queue_depth", (("queue", REALTIME_QUEUE),))] == 2
    assert got[("cancelq_queue_depth", (("queue", BULK_QUEUE),))] == 2
    assert got[("cancelq_queue_oldest_age_seconds", (("queue", REALTIME_QUEUE),))] == \
        pytest.approx(30, abs=2)
    assert got[("cancelq_queue_oldest_age_seconds", (("queue", BULK_QUEUE),))] == \
        pytest.approx(70, abs=2)
    assert got[("cancelq_retries_waiting", ())] == 1
    assert got[("cancelq_calls_total", (("status", "200"),))] == 7
    assert got[("cancelq_calls_total", (("status", "503"),))] == 2
    assert got[("cancelq_rate_limit_deferrals_total", ())] == 11
    assert got[("cancelq_gate_verdicts_total", (("gate", "rate_limit"), ("verdict", "defer")))] \
        == 11
    assert got[("cancelq_auth_blocked", ())] == 1
    assert 0 < got[("cancelq_auth_block_remaining_seconds", ())] <= 30
    assert got[("cancelq_breaker_state", (("state", "open"),))] == 1
    assert got[("cancelq_breaker_state", (("state", "closed"),))] == 0
    assert got[("cancelq_archive_pending", ())] == 1
    assert got[("cancelq_archive_oldest_pending_age_seconds", ())] == pytest.approx(90, abs=2)


def test_an_empty_store_gives_zeros_and_a_foreign_head_gives_nan(fake_store: AuditStore) -> None:
    got = samples(cluster_registry(fake_store))
    assert got[("cancelq_queue_oldest_age_seconds", (("queue", REALTIME_QUEUE),))] == 0
    assert got[("cancelq_breaker_state", (("state", "closed"),))] == 1
    assert got[("cancelq_workers_online", ())] == 0
    assert got[("cancelq_archive_pending", ())] == 0
    assert got[("cancelq_archive_oldest_pending_age_seconds", ())] == 0
    fake_store.redis.lpush(REALTIME_QUEUE, build_task_message({}, queue=REALTIME_QUEUE).payload)
    got = samples(cluster_registry(fake_store))
    assert math.isnan(got[("cancelq_queue_oldest_age_seconds", (("queue", REALTIME_QUEUE),))])


def test_a_dead_redis_is_reported_not_raised() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    store = AuditStore(fakeredis.FakeRedis(server=server, decode_responses=True))
    got = samples(cluster_registry(store))
    assert got == {("cancelq_redis_up", ()): 0}


def test_served_over_http(fake_store: AuditStore) -> None:
    seed(fake_store)
    server = serve(cluster_registry(fake_store), 0, "127.0.0.1")
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200
    names = {f.name for f in text_string_to_metric_families(answer.text)}
    assert {"cancelq_jobs", "cancelq_queue_depth", "cancelq_breaker_state"} <= names
