"""`cancelq.pipeline.batch.run_batch`: many jobs in one step, each with a single job's rules.

On fakeredis and `httpx.MockTransport` (the in-thread caller); the worker's batch task over
a real Redis, worker and simulator is in tests/integration/test_batches.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from cancelq.core.contract import TASK_NAME, CancelRequest
from cancelq.core.lifecycle import Outcome, State
from cancelq.pipeline.attempt import run_attempt
from cancelq.pipeline.batch import run_batch
from cancelq.pipeline.gates import Defer, GateVerdict, Proceed
from cancelq.store.audit import AuditStore
from cancelq.store.messages import TaskMessage, build_task_message
from cancelq.store.queues import BULK_QUEUE
from cancelq.store.records import Attempt, Begun
from tests.pipeline.test_attempt import INTERNAL, OK, Upstream, make_runtime

CASE_NOT_FOUND = (b'{"status":404,"success":false,"message":"Invalid request",'
                  b'"error":"No Case found for provided details!"}')
CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"


def jobs(store: AuditStore, n: int) -> list[tuple[str, CancelRequest]]:
    """`n` queued jobs of one run, as bulk intake records them."""
    out = []
    for i in range(n):
        request = CancelRequest.parse(case_id=CASE, event_id=f"00000000-0000-4000-8000-{i:012d}",
                                      run_id="run-1")
        job_id = f"10000000-0000-4000-8000-{i:012d}"
        store.enqueue(job_id, request, _message(job_id), queue=BULK_QUEUE)
        out.append((job_id, request))
    return out


def _message(job_id: str) -> TaskMessage:
    return build_task_message({"job_id": job_id}, queue=BULK_QUEUE)


def attempts_of(store: AuditStore, job_id: str) -> list[Attempt]:
    record = store.get(job_id)
    assert record is not None
    return list(record.attempts)


def by_event(upstream: Upstream) -> list[str]:
    return [json.loads(call.content)["calendar"]["id"] for call in upstream.calls]


def test_every_job_of_a_batch_is_called_once_and_settles(fake_store: AuditStore) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    batch = jobs(fake_store, 5)
    results = run_batch(rt, batch, rt.batch_caller, queue=BULK_QUEUE)
    assert [r.outcome for r in results] == [Outcome.CANCELLED.value] * 5
    assert sorted(by_event(upstream)) == sorted(req.event_id for _, req in batch)
    for job_id, _ in batch:
        record = fake_store.get(job_id)
        assert record is not None and record.state == State.SETTLED
        assert [a.number for a in attempts_of(fake_store, job_id)] == [1]


def test_each_job_keeps_its_own_outcome(fake_store: AuditStore) -> None:
    """A success, a Care360 404 and a 500 in one batch: three different fates, one each."""
    upstream = Upstream((200, OK), (404, CASE_NOT_FOUND), (500, INTERNAL), (200, OK))
    rt = make_runtime(fake_store, upstream)
    batch = jobs(fake_store, 3)
    results = run_batch(rt, batch, rt.batch_caller, queue=BULK_QUEUE)
    assert [r.state for r in results] == ["settled", "settled", "retrying"]
    assert [r.outcome for r in results] == ["cancelled", "case_not_found", None]
    retry = fake_store.get(batch[2][0])
    assert retry is not None and retry.state == State.RETRYING
    # the retry goes back as a one-job message on the bulk queue, not as the batch
    assert fake_store.redis.zrange(fake_store.keys.delayed, 0, -1) == [batch[2][0]]
    fake_store.redis.zadd(fake_store.keys.delayed, {batch[2][0]: 0})  # due now
    assert fake_store.promote_due() == 1
    raw = fake_store.redis.lpop(BULK_QUEUE)
    assert isinstance(raw, str)
    message = json.loads(raw)
    assert message["headers"]["task"] == TASK_NAME
    assert json.loads(base64.b64decode(message["body"]))[1]["job_id"] == batch[2][0]


def test_settled_jobs_in_a_redelivered_batch_are_not_called_again(fake_store: AuditStore) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    batch = jobs(fake_store, 4)
    run_attempt(rt, batch[0][0], batch[0][1], queue=BULK_QUEUE)
    assert len(upstream.calls) == 1
    results = run_batch(rt, batch, rt.batch_caller, queue=BULK_QUEUE)
    assert len(upstream.calls) == 4  # 1 before + the 3 not yet settled
    assert results[0].called is False and all(r.called for r in results[1:])


class DeferEveryOther:
    """A per-call gate (like the rate limit) that lets only even-numbered calls through."""

    per_batch = False

    def __init__(self) -> None:
        self.asked = 0

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        self.asked += 1
        return Proceed() if self.asked % 2 else Defer(1.0, "test: not now")

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        pass


class CountingBatchGate(DeferEveryOther):
    """A per-batch gate that always lets calls through, counting how often it is asked."""

    per_batch = True

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        self.asked += 1
        return Proceed()


def test_per_batch_gates_are_asked_once_per_call_gates_per_job(fake_store: AuditStore) -> None:
    once, each = CountingBatchGate(), DeferEveryOther()
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream, gates=(once, each))
    batch = jobs(fake_store, 6)
    results = run_batch(rt, batch, rt.batch_caller, queue=BULK_QUEUE)
    assert once.asked == 1
    assert each.asked == 6
    assert [r.state for r in results] == ["settled", "deferred"] * 3
    assert len(upstream.calls) == 3


def test_a_refusing_first_job_makes_every_job_ask_every_gate(fake_store: AuditStore) -> None:
    """When the first job does not go ahead plainly, nothing is assumed for the others."""
    once, each = CountingBatchGate(), DeferEveryOther()
    each.asked = 1  # the first job is deferred
    rt = make_runtime(fake_store, Upstream((200, OK)), gates=(once, each))
    run_batch(rt, jobs(fake_store, 4), rt.batch_caller, queue=BULK_QUEUE)
    assert once.asked == 4


def test_an_exception_from_the_call_is_recorded_and_retried(fake_store: AuditStore) -> None:
    upstream = Upstream(httpx.ConnectError, (200, OK))
    rt = make_runtime(fake_store, upstream)
    batch = jobs(fake_store, 2)
    results = run_batch(rt, batch, rt.batch_caller, queue=BULK_QUEUE)
    assert [r.state for r in results] == ["retrying", "settled"]
    (attempt,) = attempts_of(fake_store, batch[0][0])
    assert attempt.error_class == "Care360Unreachable"


def test_leases_are_held_during_the_calls_and_released_after(fake_store: AuditStore) -> None:
    seen: list[int] = []
    held = make_runtime(fake_store, Upstream((200, OK))).lease_keeper

    class Watching(Upstream):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            seen.append(len(held.held))
            return super().__call__(request)

    rt = make_runtime(fake_store, Watching((200, OK)))
    rt.leases = held
    run_batch(rt, jobs(fake_store, 3), rt.batch_caller, queue=BULK_QUEUE)
    assert seen == [3, 3, 3]
    assert held.held == []


@pytest.mark.parametrize("n", [0, 1])
def test_small_batches(fake_store: AuditStore, n: int) -> None:
    rt = make_runtime(fake_store, Upstream((200, OK)))
    assert len(run_batch(rt, jobs(fake_store, n), rt.batch_caller, queue=BULK_QUEUE)) == n


def test_a_go_ahead_is_called_before_the_next_jobs_are_asked(fake_store: AuditStore) -> None:
    """A per-call gate's go-ahead (a rate-limit slot) is a promise about now: the jobs it let
    through are called where a job is held back, not after the whole batch was asked."""
    events: list[str] = []

    class Recording(DeferEveryOther):
        def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
            verdict = super().before_call(job_id, request, queue)
            events.append(f"ask {request.event_id[-1]}")
            return verdict

    class Calls(Upstream):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            events.append(f"call {json.loads(request.content)['calendar']['id'][-1]}")
            return super().__call__(request)

    rt = make_runtime(fake_store, Calls((200, OK)), gates=(Recording(),))
    run_batch(rt, jobs(fake_store, 4), rt.batch_caller, queue=BULK_QUEUE)
    assert events == ["ask 0", "ask 1", "call 0", "ask 2", "ask 3", "call 2"]


def test_without_a_gate_holding_back_the_batch_is_one_chunk(
    fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    begins: list[int] = []
    rt = make_runtime(fake_store, Upstream((200, OK)))
    begin_many = fake_store.begin_many

    def counting(batch: Sequence[tuple[str, CancelRequest, str]], **kw: Any) -> list[Begun]:
        begins.append(len(batch))
        return begin_many(batch, **kw)

    monkeypatch.setattr(fake_store, "begin_many", counting)
    run_batch(rt, jobs(fake_store, 7), rt.batch_caller, queue=BULK_QUEUE)
    assert begins == [7]
