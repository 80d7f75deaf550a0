"""The shared breaker on a real Redis, two processes (two stores, two gates) at once: a
success in one ends a streak of failures built by the other, and costs no round trip of
its own."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis

from cancelq.core.contract import CancelRequest
from cancelq.core.settings import load_settings
from cancelq.pipeline.attempt import run_attempt
from cancelq.pipeline.breaker import BreakerGate, breaker_gate
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import REALTIME_QUEUE
from tests.pipeline.test_attempt import INTERNAL, OK, Upstream, make_runtime

SETTINGS = load_settings(CARE360_BREAKER_FAILURES=3, CARE360_BREAKER_WINDOW_SECONDS=60,
                         CARE360_BREAKER_PROBE_SECONDS=30)


class Held(Upstream):
    """Answers only once released: a call still in flight while the other process fails."""

    def __init__(self, *steps: Any) -> None:
        super().__init__(*steps)
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.started.set()
        assert self.release.wait(30)
        return super().__call__(request)


class Spied:
    """The gate's scripts, counting the breaker ops sent alone (a round trip each)."""

    def __init__(self, gate: BreakerGate) -> None:
        self.inner = gate.scripts
        self.alone: list[str] = []
        gate.scripts = self  # type: ignore[assignment]

    def __call__(self, name: Any, args: Any, *, client: Any = None) -> Any:
        if client is None:
            self.alone.append(args[1])
        return self.inner(name, args, client=client)


def process(store: AuditStore, upstream: Upstream) -> tuple[Runtime, BreakerGate]:
    gate = breaker_gate(store, SETTINGS)
    assert gate is not None
    return make_runtime(store, upstream, gates=(gate,)), gate


def attempt(rt: Runtime) -> str:
    """A new job, run once as the task runs it: its state after."""
    job_id = str(uuid.uuid4())
    request = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=REALTIME_QUEUE, task_id=job_id)
    assert rt.store.enqueue(job_id, request, message, queue=REALTIME_QUEUE) is not None
    return run_attempt(rt, job_id, request, queue=REALTIME_QUEUE).state


@contextmanager
def in_flight(rt: Runtime, upstream: Held) -> Iterator[list[str]]:
    """One job of `rt` calling (past its breaker check) for the length of the block."""
    states: list[str] = []
    thread = threading.Thread(target=lambda: states.append(attempt(rt)))
    thread.start()
    assert upstream.started.wait(30)
    try:
        yield states
    finally:
        upstream.release.set()
        thread.join(30)


def breaker(store: AuditStore) -> dict[str, str]:
    return {str(k): str(v) for k, v in store.redis.hgetall(store.keys.breaker).items()}


def test_a_success_elsewhere_ends_the_streak(real_store: AuditStore, redis_url: str) -> None:
    store_b = AuditStore(redis.Redis.from_url(redis_url, decode_responses=True))  # process B
    rt_a, _gate_a = process(real_store, Upstream((503, INTERNAL)))
    held = Held((200, OK))
    rt_b, gate_b = process(store_b, held)
    spied = Spied(gate_b)
    with in_flight(rt_b, held) as states:  # B checked the breaker: closed, no streak
        assert [attempt(rt_a), attempt(rt_a)] == ["retrying", "retrying"]
        assert breaker(real_store)["failures"] == "2"
    assert states == ["settled"]  # B's success came after A's two failures ...
    assert spied.alone == ["check"]  # ... and rode on B's finish: no round trip of its own
    assert attempt(rt_a) == "retrying"
    assert (breaker(real_store)["state"], breaker(real_store)["failures"]) == ("closed", "1")
    assert [attempt(rt_a), attempt(rt_a)] == ["retrying", "retrying"]  # 3 in a row now
    assert breaker(real_store)["state"] == "open"
