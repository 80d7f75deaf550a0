"""The liveness rule (`cancelq.ops.health`): heartbeats, queue-head ages and the verdict.

The verdict is a pure function, so each rule gets a case of its own here; reading the
heads and heartbeats is checked on fakeredis with messages built as producers build them.
The real-process proof (a worker stopped and resumed) is tests/integration/test_health.py.
"""

from __future__ import annotations

import uuid

import pytest

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Decision
from cancelq.ops.health import (
    FORGET_AFTER_SECONDS,
    Heartbeat,
    QueueHead,
    Selector,
    forget_gone,
    judge,
    queue_heads,
    read_heartbeats,
    remove_heartbeat,
    write_heartbeat,
)
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from cancelq.store.records import Attempt

NOW = 1_800_000_000.0
RT, BULK = REALTIME_QUEUE, BULK_QUEUE


def beat(node: str = "w@a", *, at: float = NOW, consumed: float | None = NOW,
         started: float = NOW - 3600, host: str = "a",
         queues: tuple[str, ...] = (RT, BULK)) -> Heartbeat:
    return Heartbeat(node=node, host=host, pid=1, concurrency=4, queues=queues,
                     started_at=started, at=at, consumed_at=consumed)


def heads(rt: float | None = None, bulk: float | None = None) -> dict[str, QueueHead]:
    return {RT: QueueHead(RT, "j1" if rt is not None else None, rt),
            BULK: QueueHead(BULK, "j2" if bulk is not None else None, bulk)}


def test_heartbeat_round_trips_and_foreign_values_are_ignored() -> None:
    b = beat(consumed=None)
    assert Heartbeat.decode(b.encode()) == b
    for junk in ("", "{}", "[1]", '{"node": "x"}', "not json"):
        assert Heartbeat.decode(junk) is None


def test_no_heartbeat_at_all_is_unhealthy() -> None:
    verdict = judge([], heads(), now=NOW, max_age=60)
    assert not verdict.healthy and "no heartbeat" in verdict.why


def test_a_queue_head_older_than_max_age_with_nothing_received_is_unhealthy() -> None:
    verdict = judge([beat(consumed=NOW - 100)], heads(rt=90), now=NOW, max_age=60)
    assert not verdict.healthy
    assert verdict.why.startswith(f"{RT}: a job has waited 90s")
    assert "received nothing for 100s" in verdict.why


def test_an_old_head_while_the_worker_receives_is_healthy() -> None:
    """A backlog the worker is working through (e.g. at the rate limit) is not a stall."""
    assert judge([beat(consumed=NOW - 5)], heads(bulk=900), now=NOW, max_age=60).healthy


def test_an_idle_worker_with_a_fresh_job_is_healthy() -> None:
    verdict = judge([beat(consumed=NOW - 5000)], heads(rt=2), now=NOW, max_age=60)
    assert verdict.line() == "healthy: w@a alive, last received 5000s ago; oldest waiting job 2s"


def test_the_healthy_line_says_when_nothing_was_received_yet() -> None:
    verdict = judge([beat(consumed=None, started=NOW - 5)], heads(), now=NOW, max_age=60)
    assert verdict.line() == "healthy: w@a alive, nothing received yet; nothing waiting"


def test_a_new_worker_gets_max_age_before_it_must_have_received() -> None:
    young = beat(consumed=None, started=NOW - 10)
    assert judge([young], heads(rt=500), now=NOW, max_age=60).healthy
    old = beat(consumed=None, started=NOW - 61)
    assert not judge([old], heads(rt=500), now=NOW, max_age=60).healthy


def test_a_stale_heartbeat_fails_a_named_node_but_not_the_cluster() -> None:
    live, dead = beat("w1@a"), beat("w2@b", at=NOW - 120, host="b")
    assert judge([live, dead], heads(), now=NOW, max_age=60).healthy
    named = judge([live, dead], heads(), now=NOW, max_age=60, selector=Selector(("w2@b",)))
    assert not named.healthy and named.why.startswith("w2@b: no heartbeat for 120s")
    host = judge([live, dead], heads(), now=NOW, max_age=60, selector=Selector(host="b"))
    assert not host.healthy
    assert judge([live, dead], heads(), now=NOW, max_age=60, selector=Selector(host="a")).healthy


def test_a_node_that_never_reported_is_unhealthy() -> None:
    verdict = judge([beat("w1@a")], heads(), now=NOW, max_age=60, selector=Selector(("w9@z",)))
    assert not verdict.healthy and "w9@z has never sent a heartbeat" in verdict.why
    host = judge([beat("w1@a")], heads(), now=NOW, max_age=60, selector=Selector(host="z"))
    assert not host.healthy and "workers on z" in host.why


def test_a_waiting_queue_no_live_worker_consumes_is_unhealthy_for_the_cluster() -> None:
    bulk_only = beat(queues=(BULK,))
    verdict = judge([bulk_only], heads(rt=100), now=NOW, max_age=60)
    assert not verdict.healthy and "no live worker consumes it" in verdict.why
    # ... but the bulk-only worker itself is fine: that queue is not its business
    mine = judge([bulk_only], heads(rt=100), now=NOW, max_age=60, selector=Selector(host="a"))
    assert mine.healthy


def test_one_receiving_worker_is_enough_for_a_queue() -> None:
    stuck, busy = beat("w1@a", consumed=NOW - 300), beat("w2@a", consumed=NOW - 1)
    assert judge([stuck, busy], heads(rt=120), now=NOW, max_age=60).healthy


# -- reading Redis (fakeredis) ------------------------------------------------------------


def enqueue(store: AuditStore, *, queue: str = RT, now: float, priority: int = 0) -> str:
    job_id = str(uuid.uuid4())
    request = CancelRequest.parse(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=queue, task_id=job_id, priority=priority)
    store.enqueue(job_id, request, message, queue=queue, now=now)
    return job_id


def test_queue_heads_name_the_job_a_worker_takes_next(fake_store: AuditStore) -> None:
    now = float(fake_store.redis.time()[0])
    first = enqueue(fake_store, now=now - 100)
    enqueue(fake_store, now=now - 10)
    urgent = enqueue(fake_store, now=now - 40, priority=9)  # another list of the same queue
    found = queue_heads(fake_store, now)
    assert found[RT].job_id == first and found[RT].age_seconds == pytest.approx(100, abs=0.01)
    assert found[BULK] == QueueHead(BULK, None, None)
    fake_store.redis.rpop("cancellations")  # a worker took `first`
    fake_store.redis.rpop("cancellations")
    found = queue_heads(fake_store, now)
    assert found[RT].job_id == urgent and found[RT].age_seconds == pytest.approx(40, abs=0.01)


def test_a_retry_waits_from_its_due_time_not_from_creation(fake_store: AuditStore) -> None:
    now = float(fake_store.redis.time()[0])
    job = enqueue(fake_store, queue=BULK, now=now - 1000)
    fake_store.redis.delete("cancellations.bulk")
    record = fake_store.get(job)
    assert record is not None  # the attempt is of the job's own (case, event)
    request = CancelRequest.parse(case_id=record.case_id, event_id=record.event_id)
    fake_store.begin(job, request, max_attempts=3, queue=BULK, queue_key=BULK, owner="t",
                     lease_seconds=30, now=now - 30)
    retry = build_task_message({"job_id": job}, queue=BULK)
    decision: Decision = "retry"
    fake_store.finish(job, attempt=Attempt(1, now - 30, 5.0, 503, "T", "x"), decision=decision,
                      delay_seconds=0.0, retry_message=retry, owner="t", now=now - 20)
    fake_store.redis.lpush(BULK, retry.payload)  # the scheduler promoted it when due
    head = queue_heads(fake_store, now)[BULK]
    assert head.job_id == job and head.age_seconds == pytest.approx(20, abs=0.5)


def test_a_message_without_a_record_has_no_known_age(fake_store: AuditStore) -> None:
    foreign = build_task_message({"case_id": "c", "event_id": "e"}, queue=RT)
    fake_store.redis.lpush(RT, foreign.payload)
    assert queue_heads(fake_store, 0.0)[RT].age_seconds is None


def test_heartbeats_are_written_read_removed_and_forgotten(fake_store: AuditStore) -> None:
    write_heartbeat(fake_store, beat("w1@a"))
    write_heartbeat(fake_store, beat("w2@a", at=NOW - FORGET_AFTER_SECONDS - 1))
    fake_store.redis.hset(fake_store.keys.workers, "junk", "not json")
    assert [b.node for b in read_heartbeats(fake_store)] == ["w1@a", "w2@a"]
    assert forget_gone(fake_store, NOW) == 2  # the long-gone one and the junk
    assert [b.node for b in read_heartbeats(fake_store)] == ["w1@a"]
    remove_heartbeat(fake_store, "w1@a")
    assert read_heartbeats(fake_store) == []
