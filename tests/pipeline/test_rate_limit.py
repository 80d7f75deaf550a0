"""The global rate limit: the gate on fakeredis, then two real workers sharing one limit."""

from __future__ import annotations

import time
import uuid

import fakeredis
import pytest
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr

from cancelq.care360.client import Care360Client
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.core.settings import load_settings
from cancelq.pipeline.attempt import run_attempt
from cancelq.pipeline.gates import Defer, Proceed
from cancelq.pipeline.rate_limit import (
    BULK_WAIT_SECONDS,
    Limit,
    RateLimitGate,
    rate_limit_gate,
)
from cancelq.pipeline.runtime import Runtime, build_runtime
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from cancelq.store.rate_window import TurnBook
from producers.enqueue import submit
from tests.conftest import API_KEY

REQUEST = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))


class FakeTime:
    """A clock that only moves when the gate sleeps (the limiter keeps real time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_gate(
    client: fakeredis.FakeRedis, per_second: float, fake: FakeTime | None = None
) -> RateLimitGate:
    limit = Limit.for_rate(per_second)
    assert limit is not None
    storage = RedisStorage("redis://", connection_pool=client.connection_pool, key_prefix="t:rl")
    fake = fake or FakeTime()
    return RateLimitGate(
        MovingWindowRateLimiter(storage), limit, turns=TurnBook(client, "t:rl:turns"),
        sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5,
    )


@pytest.mark.parametrize(("rate", "expected"), [
    (20, Limit(20, 1, 2)), (10, Limit(10, 1, 1)), (2.5, Limit(2, 1, 1)), (1, Limit(1, 1, 0)),
    (0.5, Limit(1, 2, 0)), (0.3, Limit(1, 4, 0)), (0, None),
])
def test_the_limit_for_a_rate(rate: float, expected: Limit | None) -> None:
    assert Limit.for_rate(rate) == expected


def test_the_limit_holds_and_real_time_defers_briefly(fake_redis: fakeredis.FakeRedis) -> None:
    fake = FakeTime()
    gate = make_gate(fake_redis, 5, fake)
    verdicts = [gate.before_call("j", REQUEST, REALTIME_QUEUE) for _ in range(6)]
    assert verdicts[:5] == [Proceed()] * 5
    deferred = verdicts[5]
    assert isinstance(deferred, Defer) and "rate limit 5/1s" in deferred.why
    # it waits at most REALTIME_WAIT_SECONDS for a slot, then gives its thread back
    assert sum(fake.slept) <= 0.2 + 1e-9
    assert 0.05 <= deferred.seconds <= 1.1


def test_bulk_leaves_the_reserve_to_real_time(fake_redis: fakeredis.FakeRedis) -> None:
    gate = make_gate(fake_redis, 10)  # reserve 1: bulk may take 9 of 10
    bulk = [gate.before_call("b", REQUEST, BULK_QUEUE) for _ in range(10)]
    assert bulk[:9] == [Proceed()] * 9 and isinstance(bulk[9], Defer)
    assert gate.before_call("r", REQUEST, REALTIME_QUEUE) == Proceed()
    assert isinstance(gate.before_call("r", REQUEST, REALTIME_QUEUE), Defer)


def test_deferred_bulk_jobs_book_turns_spread_at_the_bulk_rate(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    fake = FakeTime()
    gate = make_gate(fake_redis, 10, fake)
    for _ in range(9):
        assert gate.before_call("b", REQUEST, BULK_QUEUE) == Proceed()
    # A delay is "turn - now" by Redis's clock, read somewhere inside the call: the turn's
    # absolute time lies between delay + the time before and delay + the time after it.
    turns = []
    for _ in range(5):
        before = time.time()
        verdict = gate.before_call("b", REQUEST, BULK_QUEUE)
        after = time.time()
        assert isinstance(verdict, Defer) and "bulk turn" in verdict.why
        turns.append((verdict.seconds + before, verdict.seconds + after))
    for (low, high), (next_low, next_high) in zip(turns, turns[1:], strict=False):
        assert next_low - high - 0.005 <= 1 / 9 <= next_high - low + 0.005, turns
    assert sum(fake.slept) <= BULK_WAIT_SECONDS + 1e-9


def test_a_call_waits_for_a_slot_that_opens_soon(fake_redis: fakeredis.FakeRedis) -> None:
    limit = Limit.for_rate(2)
    assert limit is not None
    storage = RedisStorage(
        "redis://", connection_pool=fake_redis.connection_pool, key_prefix="t:rl"
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    gate = RateLimitGate(MovingWindowRateLimiter(storage), limit, realtime_wait=1.5,
                         sleep=sleep)
    assert gate.before_call("a", REQUEST, REALTIME_QUEUE) == Proceed()
    assert gate.before_call("b", REQUEST, REALTIME_QUEUE) == Proceed()
    # the third waits (really) for the first to leave the window, then proceeds, not defers
    assert gate.before_call("c", REQUEST, REALTIME_QUEUE) == Proceed()
    assert slept and all(0 < s <= 1.0 for s in slept), slept


def test_no_gate_for_no_limit_and_the_runtime_wires_it(
    fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rate_limit_gate(fake_store, 0) is None
    gate = rate_limit_gate(fake_store, 20)
    assert gate is not None and gate.limit == Limit(20, 1, 2)
    monkeypatch.setenv("CV_API_KEY", API_KEY)
    rt = build_runtime(load_settings())
    assert any(isinstance(g, RateLimitGate) for g in rt.gates)
    assert isinstance(rt.gates[-1], RateLimitGate)  # last: after the auth gate
    monkeypatch.setenv("CARE360_RATE_LIMIT", "0")
    rt = build_runtime(load_settings())
    assert not any(isinstance(g, RateLimitGate) for g in rt.gates)


def test_a_deferred_job_uses_no_attempt_and_waits_in_the_delayed_set(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    gate = make_gate(fake_redis, 1)
    assert gate.before_call("x", REQUEST, BULK_QUEUE) == Proceed()  # the window is now full
    job = submit(REQUEST, store=fake_store, queue=BULK_QUEUE)
    fake_redis.delete(BULK_QUEUE)
    client = Care360Client("http://127.0.0.1:1", SecretStr(API_KEY), timeout_seconds=1)
    rt = Runtime(settings=load_settings(CV_API_KEY=API_KEY), store=fake_store, client=client,
                 gates=(gate,))
    result = run_attempt(rt, job.job_id, REQUEST, queue=BULK_QUEUE)
    assert result.state == "deferred" and not result.called
    record = fake_store.get(job.job_id)
    assert record is not None and record.state is State.QUEUED and record.attempt_count == 0
    assert fake_store.delayed_count() == 1


# -- integration: two workers, one limit ---------------------------------------------------


def _max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best

