"""The fan-out's loop when it goes wrong: a dead loop thread is replaced, a stuck loop
(blocked, so no deadline fires) is noticed by the waiting threads, by the lease keeper and
by `cancelq health` through the worker's heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import fakeredis
import httpx
import pytest
from pydantic import SecretStr

from cancelq.care360.fanout import STUCK_MARGIN_SECONDS, FanOut
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import Care360Timeout, TransportError
from cancelq.ops.health import Heartbeat, check
from cancelq.ops.metrics import WorkerMetrics
from cancelq.pipeline.lease import LeaseKeeper, new_owner
from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS
from cancelq.store.queues import REALTIME_QUEUE
from tests.care360.test_client import BASE, CASE, EVENT, OK
from tests.care360.test_hostile_answers import guarded
from tests.conftest import API_KEY, wait_for
from worker.telemetry import Telemetry

#: The deadline of the stuck tests: the loop is blocked well past deadline plus margin.
DEADLINE = 0.5
BLOCK_SECONDS = DEADLINE + STUCK_MARGIN_SECONDS + 3.0


class Blocking:
    """A mock handler: `/block` blocks the loop's thread (no await, so no timer runs),
    `/hang` awaits forever (the loop stays free), anything else answers at once."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        case = request.url.path.rsplit("/", 1)[1]
        if case in ("block", "hang"):
            self.entered.set()
        if case == "block":
            time.sleep(BLOCK_SECONDS)
        if case == "hang":
            await asyncio.sleep(3600)
        return httpx.Response(200, content=OK)


@contextmanager
def fan_out(handler: Blocking, timeout: float = DEADLINE) -> Iterator[FanOut]:
    fanout = FanOut(BASE, SecretStr(API_KEY), timeout_seconds=timeout, max_in_flight=8,
                    transport=httpx.MockTransport(handler))
    try:
        yield fanout
    finally:
        fanout.close()


def in_thread(fanout: FanOut, case: str) -> tuple[threading.Thread, list[object]]:
    """`fanout.cancel(case)` in a thread; its result or exception lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fanout.cancel(case, EVENT))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def kill_loop(fanout: FanOut) -> None:
    """End the loop's thread as an escaped BaseException would (run_forever re-raises it)."""
    running = fanout._running
    assert running is not None

    def die() -> None:
        raise SystemExit  # the thread ends; threading's hook stays quiet about SystemExit

    running.loop.call_soon_threadsafe(die)
    running.thread.join(10)
    assert not running.thread.is_alive()


#: the loop's thread is killed on purpose: pytest reports its end as a warning
THREAD_DIES = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@THREAD_DIES
def test_a_dead_loop_thread_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    """The call waiting on the dead loop fails (retryable) instead of waiting forever; the
    next call runs on a new loop; one log line says so."""
    caplog.set_level(logging.INFO, logger="cancelq.fanout")
    handler = Blocking()
    with fan_out(handler, timeout=30) as fanout:
        assert fanout.cancel(CASE, EVENT).status == 200
        first = fanout._running
        waiter, out = in_thread(fanout, "hang")
        assert handler.entered.wait(10)
        kill_loop(fanout)
        waiter.join(30)
        assert not waiter.is_alive(), "the call on the dead loop was still waiting"
        [failed] = out
        assert type(failed) is TransportError and "loop stopped" in str(failed)
        assert fanout.cancel(CASE, EVENT).status == 200
        second = fanout._running
        assert second is not None and second is not first and second.thread.is_alive()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "care360 fan-out: its event loop thread died; started a new one "
        "(the calls it held are retried)"
    ]


@THREAD_DIES
def test_a_dead_loop_found_by_the_next_call_is_replaced() -> None:
    with fan_out(Blocking(), timeout=30) as fanout:
        fanout.cancel(CASE, EVENT)
        kill_loop(fanout)
        [timed] = fanout.cancel_many([(CASE, EVENT)])
        assert getattr(timed.result, "status", None) == 200


def test_a_stuck_loop_ends_the_wait_and_is_reported() -> None:
    """A loop blocked past the deadline runs no timer: the waiting thread gives up on its
    own (Care360Timeout), `stuck()` says so meanwhile, and all is well once it unblocks."""
    handler = Blocking()
    with fan_out(handler) as fanout:
        waiter, out = in_thread(fanout, "block")
        assert handler.entered.wait(10)
        wait_for(fanout.stuck, timeout=BLOCK_SECONDS + 10)
        age = fanout.oldest_call_age()
        assert age is not None and age > fanout.stuck_after
        waiter.join(BLOCK_SECONDS + 20)
        assert not waiter.is_alive()
        [failed] = out
        assert isinstance(failed, Care360Timeout) and "stuck" in str(failed)
        wait_for(lambda: not fanout.stuck(), timeout=BLOCK_SECONDS + 10)
        assert fanout.cancel(CASE, EVENT).status == 200


REQUEST = CancelRequest.parse(case_id=CASE, event_id=EVENT)


def test_leases_are_not_renewed_while_a_call_is_stuck(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    handler = Blocking()
    with fan_out(handler) as fanout:
        keeper = LeaseKeeper(fake_store, lease_seconds=30, calls_stuck=fanout.stuck)
        owner = new_owner()
        fake_store.begin("j1", REQUEST, max_attempts=3, queue=REALTIME_QUEUE,
                         queue_key=REALTIME_QUEUE, owner=owner, lease_seconds=30)
        key = fake_store.keys.job("j1")
        with keeper.hold("j1", owner):
            fake_redis.hset(key, FIELDS["lease_until"], "1")  # what a renewal would move on
            keeper.renew_once()
            renewed = fake_redis.hget(key, FIELDS["lease_until"])
            assert renewed is not None and float(renewed) > 1  # renewed: nothing stuck
            fake_redis.hset(key, FIELDS["lease_until"], "1")
            waiter, _ = in_thread(fanout, "block")
            wait_for(fanout.stuck, timeout=BLOCK_SECONDS + 10)
            assert keeper.renew_once() == []
            assert fake_redis.hget(key, FIELDS["lease_until"]) == "1"  # left to run out
            waiter.join(BLOCK_SECONDS + 20)
        keeper.stop()


def test_health_fails_while_a_call_is_stuck(fake_store: AuditStore) -> None:
    handler = Blocking()
    with fan_out(handler) as fanout:
        telemetry = Telemetry(fake_store, WorkerMetrics(), node="w@a", concurrency=4,
                              queues=(REALTIME_QUEUE,), watch=fanout)
        telemetry.beat()
        assert check(fake_store, max_age=60).healthy
        waiter, _ = in_thread(fanout, "block")
        wait_for(fanout.stuck, timeout=BLOCK_SECONDS + 10)
        beat = telemetry.beat()
        assert beat.calls_stuck()
        verdict = check(fake_store, max_age=60)
        assert not verdict.healthy
        assert verdict.why.startswith("w@a: a Care360 call has been in flight")
        waiter.join(BLOCK_SECONDS + 20)
        wait_for(lambda: not fanout.stuck(), timeout=BLOCK_SECONDS + 10)
        telemetry.beat()
        assert check(fake_store, max_age=60).healthy


def test_the_heartbeat_carries_the_oldest_call_and_reads_old_beats() -> None:
    beat = Heartbeat(node="w@a", host="a", pid=1, concurrency=4, queues=(REALTIME_QUEUE,),
                     started_at=1.0, at=2.0, oldest_call_seconds=12.5, stuck_after_seconds=12.0)
    assert Heartbeat.decode(beat.encode()) == beat and beat.calls_stuck()
    old = '{"node":"w","host":"h","pid":1,"concurrency":2,"queues":[],"started_at":1,"at":2}'
    decoded = Heartbeat.decode(old)
    assert decoded is not None and not decoded.calls_stuck()


def test_a_healthy_hanging_call_ends_at_its_deadline_not_stuck() -> None:
    """A call the loop can still time out (awaiting, not blocking) ends at the deadline."""
    with fan_out(Blocking()) as fanout:
        got = guarded(lambda: fanout.cancel("hang", EVENT))
        assert isinstance(got, Care360Timeout) and "deadline" in str(got)
        assert not fanout.stuck() and fanout.oldest_call_age() is None
