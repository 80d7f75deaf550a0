"""`run_attempt` under faults: odd exceptions, a second copy, a foreign job id, the breaker's
probe, a gate that raises, a poisoned routing key. fakeredis and `httpx.MockTransport`."""

from __future__ import annotations

import logging

import fakeredis
import httpx
import pytest

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.pipeline.attempt import run_attempt
from cancelq.pipeline.gates import GateVerdict, Proceed
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from tests.conftest import API_KEY
from tests.pipeline.test_attempt import (
    CASE,
    EVENT,
    INTERNAL,
    OK,
    Upstream,
    deliver,
    make_runtime,
    record,
    submit,
)

OTHER_EVENT = "987fcdeb-51a2-43d7-9876-543210fedcbb"


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("step", "error_class", "error"),
    [
        # a broken gzip body: the client maps it into our tree (its .request held the key)
        (httpx.DecodingError, "TransportError", "no usable answer (DecodingError)"),
        # JSON nested deeper than the parser goes: caught by the attempt's catch-all
        ((200, deep_json()), "RecursionError", "unexpected RecursionError"),
    ],
)
def test_an_odd_exception_is_recorded_and_retried_never_left_running(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture,
    step: object, error_class: str, error: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = Upstream(step, (200, OK))  # type: ignore[arg-type]
    rt = make_runtime(fake_store, upstream)
    submit(fake_store)
    first = deliver(rt, fake_redis)
    assert (first.state, first.called) == ("retrying", True)
    rec = record(rt)
    assert rec.state is State.RETRYING
    assert (rec.attempts[0].error_class, rec.attempts[0].verdict) == (error_class, "retry")
    assert rec.attempts[0].error == error
    assert fake_store.promote_due() == 1
    assert deliver(rt, fake_redis).outcome == "cancelled"
    assert len(upstream.calls) == 2
    assert upstream.calls[0].headers["cv-api-key"] == API_KEY  # the key was in the request...
    assert API_KEY not in caplog.text  # ...and nowhere after
    assert API_KEY not in str(record(rt).to_json())


def test_odd_exceptions_forever_end_dead_not_running(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    rt = make_runtime(fake_store, Upstream(httpx.DecodingError), max_attempts=2)
    submit(fake_store)
    deliver(rt, fake_redis)
    fake_store.promote_due()
    assert deliver(rt, fake_redis).state == "dead"
    assert (record(rt).state, record(rt).outcome) == (State.DEAD, "retries_exhausted")


def test_a_second_copy_defers_without_calling_while_the_first_holds_the_lease(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    request = submit(fake_store)
    fake_store.begin("j1", request, max_attempts=3, queue=REALTIME_QUEUE,
                     queue_key=REALTIME_QUEUE, owner="the-first-copy", lease_seconds=30)
    result = run_attempt(rt, "j1", request, queue=REALTIME_QUEUE)
    assert (result.state, result.called) == ("deferred", False)
    assert 29 < (result.retry_in_seconds or 0) <= 31
    assert upstream.calls == []
    rec = record(rt)
    assert (rec.state, rec.attempt_count, rec.attempts) == (State.RUNNING, 1, ())
    assert fake_store.delayed_count() == 1


class LeaseSpy(Upstream):
    """Answers 200, noting which leases the runtime's keeper holds while the call is made."""

    def __init__(self) -> None:
        super().__init__((200, OK))
        self.rt: Runtime | None = None
        self.held: list[list[tuple[str, str]]] = []
        self.renewed_lost: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert self.rt is not None
        self.held.append(self.rt.lease_keeper.held)
        self.renewed_lost.append(self.rt.lease_keeper.renew_once())
        return super().__call__(request)


def test_the_lease_is_held_during_the_call(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    spy = LeaseSpy()
    rt = make_runtime(fake_store, spy)
    spy.rt = rt
    submit(fake_store)
    deliver(rt, fake_redis)
    assert [job for job, _owner in spy.held[0]] == ["j1"]
    assert spy.renewed_lost == [[]]  # ours, and renewable while the call runs
    assert rt.lease_keeper.held == []


def test_a_foreign_message_reusing_a_job_id_is_never_run(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    submit(fake_store)
    foreign = CancelRequest.parse(case_id=CASE, event_id=OTHER_EVENT)
    result = run_attempt(rt, "j1", foreign, queue=REALTIME_QUEUE)
    assert (result.state, result.called) == ("rejected", False)
    assert upstream.calls == []
    assert record(rt).state is State.QUEUED
    rejected = record(rt, str(result.outcome))
    assert (rejected.event_id, rejected.outcome) == (OTHER_EVENT, "invalid_request")
    assert deliver(rt, fake_redis).outcome == "cancelled"  # the real job still runs
    assert [c.read() for c in upstream.calls][0].find(EVENT.encode()) > 0


class ProbeGate:
    """Says every call is a probe of the open breaker."""

    per_batch = False

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        return Proceed(probe=True)

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        pass


def test_a_failed_probe_does_not_use_the_budget(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((503, INTERNAL), (503, INTERNAL), (503, INTERNAL), (200, OK))
    rt = make_runtime(fake_store, upstream, max_attempts=1, gates=[ProbeGate()])
    submit(fake_store)
    for _ in range(3):
        assert deliver(rt, fake_redis).state == "retrying"  # never dead: probes are spared
        assert fake_store.promote_due() == 1
    assert deliver(rt, fake_redis).outcome == "cancelled"
    rec = record(rt)
    assert [a.http_status for a in rec.attempts] == [503, 503, 503, 200]
    assert fake_store.counters()["attempts"] == len(upstream.calls) == 4


class RaisingGate:
    per_batch = False

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        raise KeyError("a bug in a policy")

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        pass


def test_a_gate_that_raises_defers_the_job(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream, gates=[RaisingGate()])
    submit(fake_store)
    result = deliver(rt, fake_redis)
    assert (result.state, result.called) == ("deferred", False)
    assert fake_store.delayed_count() == 1 and upstream.calls == []


def test_a_retry_goes_back_to_our_queue_whatever_the_routing_key_said(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    fake_redis.hset("evil", "x", "1")
    rt = make_runtime(fake_store, Upstream((500, INTERNAL), (200, OK)))
    request = submit(fake_store)
    fake_redis.delete(REALTIME_QUEUE)
    assert run_attempt(rt, "j1", request, queue="evil").state == "retrying"
    assert fake_store.promote_due() == 1
    assert fake_redis.llen(REALTIME_QUEUE) == 1
    assert fake_redis.type("evil") == "hash"
