"""`cancelq.store.audit.AuditStore` on fakeredis (with its Lua): records, indexes, counters, the
queue push, idempotency, the attempt lifecycle, retries and the delayed set, queries."""

from __future__ import annotations

import json
import time
from collections import Counter

import fakeredis
import pytest

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.messages import TaskMessage, build_task_message
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, queue_key
from cancelq.store.records import Attempt, Begun, JobRecord, Query
from tests.conftest import wait_for

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
CASE_2 = "11111111-2222-3333-4444-555555555555"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
EVENT_2 = "987fcdeb-51a2-43d7-9876-543210fedcbb"
EVENT_3 = "987fcdeb-51a2-43d7-9876-543210fedcbc"
P = "t"  # the fixture's key prefix


def req(case: str = CASE, event: str = EVENT, **extra: str) -> CancelRequest:
    return CancelRequest.parse(case_id=case, event_id=event, **extra)


def msg(job_id: str, request: CancelRequest, *, queue: str = REALTIME_QUEUE,
        priority: int = 0) -> TaskMessage:
    return build_task_message(
        {"job_id": job_id, **request.model_dump(exclude_none=True)},
        queue=queue, task_id=job_id, priority=priority,
    )


def enqueue(store: AuditStore, job_id: str, request: CancelRequest | None = None, *,
            force: bool = False, now: float | None = None, queue: str = REALTIME_QUEUE):
    request = request or req()
    result = store.enqueue(job_id, request, msg(job_id, request, queue=queue), queue=queue,
                           force=force, now=now)
    assert result is not None
    return result


OWNER = "w1"  # the lease owner of the attempts these tests begin


def begin(store: AuditStore, job_id: str, request: CancelRequest | None = None, *,
          max_attempts: int = 8, owner: str = OWNER, lease: float = 30.0) -> Begun:
    return store.begin(job_id, request or req(), max_attempts=max_attempts,
                       queue=REALTIME_QUEUE, queue_key=REALTIME_QUEUE, owner=owner,
                       lease_seconds=lease)


def attempt(number: int, status: int | None = 500, verdict: str = "retry") -> Attempt:
    return Attempt(number=number, started_at=time.time(), duration_ms=1.0, http_status=status,
                   error_class="TransientResponse", error=f"HTTP {status}", verdict=verdict)


def settle(store: AuditStore, job_id: str, number: int, outcome: str, *,
           decision: str = "settle", status: int = 400) -> bool:
    return store.finish(job_id, attempt=attempt(number, status, outcome), owner=OWNER,
                        decision=decision, outcome=outcome)  # type: ignore[arg-type]


def retry(store: AuditStore, job_id: str, number: int, *, delay: float = 60.0,
          message: TaskMessage | None = None, status: int | None = 500) -> bool:
    return store.finish(job_id, attempt=attempt(number, status), decision="retry", owner=OWNER,
                        delay_seconds=delay, retry_message=message or msg(job_id, req()))


def record(store: AuditStore, job_id: str) -> JobRecord:
    got = store.get(job_id)
    assert got is not None, job_id
    return got


def assert_consistent(store: AuditStore, r: fakeredis.FakeRedis) -> None:
    """Counters and indexes agree with the records, globally and per run."""
    ids = [str(i) for i in r.zrange(f"{P}:idx:all", 0, -1)]
    records = store.get_many(ids)
    assert len(records) == len(ids)

    def check(counters: dict[str, int], subset: list[JobRecord]) -> None:
        assert all(v >= 0 for v in counters.values()), counters
        states = Counter(rec.state.value for rec in subset)
        for state in State:
            assert counters.get(f"state:{state.value}", 0) == states[state.value], state
        outcomes = Counter(rec.outcome for rec in subset if rec.state.is_final)
        counted = {k.removeprefix("outcome:"): v for k, v in counters.items()
                   if k.startswith("outcome:") and v}
        assert counted == dict(outcomes)
        assert counters.get("jobs", 0) == len(subset)
        calls = sum(1 for rec in subset for a in rec.attempts
                    if a.number > 0 and a.verdict != "interrupted")
        assert counters.get("attempts", 0) == calls

    check(store.counters(), records)
    for state in State:  # settled jobs have no state index: idx:all answers for them
        members = set(r.zrange(f"{P}:idx:state:{state.value}", 0, -1))
        listed = set() if state is State.SETTLED else {
            rec.job_id for rec in records if rec.state is state}
        assert members == listed, state
    for outcome in {rec.outcome for rec in records if rec.outcome}:
        members = set(r.zrange(f"{P}:idx:outcome:{outcome}", 0, -1))
        assert members == {rec.job_id for rec in records if rec.outcome == outcome}
    for run_id in [str(i) for i in r.zrange(f"{P}:runs", 0, -1)]:
        check(store.counters(run_id), [rec for rec in records if rec.run_id == run_id])


# -- enqueue ------------------------------------------------------------------------------


def test_enqueue_records_indexes_counts_and_pushes_one_message(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req(run_id="run-1", requested_by="ops", reason="duplicate booking")
    message = msg("j1", request)
    got = fake_store.enqueue("j1", request, message, queue=REALTIME_QUEUE, now=1000.5)
    assert got is not None
    assert (got.job_id, got.duplicate, got.state) == ("j1", False, State.QUEUED)

    rec = record(fake_store, "j1")
    assert (rec.case_id, rec.event_id, rec.run_id) == (CASE, EVENT, "run-1")
    assert (rec.requested_by, rec.reason) == ("ops", "duplicate booking")
    assert (rec.state, rec.outcome, rec.attempt_count) == (State.QUEUED, None, 0)
    assert rec.created_at == 1000.5 and rec.queue == REALTIME_QUEUE
    assert rec.attempts == ()

    assert fake_redis.lrange(REALTIME_QUEUE, 0, -1) == [message.payload]
    assert fake_store.job_for_pair(CASE, EVENT) == "j1"
    for index in ("idx:all", "idx:run:run-1", "idx:state:queued"):
        assert fake_redis.zscore(f"{P}:{index}", "j1") == 1000.5, index
    assert fake_store.lookup_ids(case_id=CASE) == fake_store.lookup_ids(event_id=EVENT) == ["j1"]
    assert fake_redis.zrange(f"{P}:runs", 0, -1) == ["run-1"]
    assert fake_store.counters() == {"jobs": 1, "state:queued": 1}
    assert fake_store.counters("run-1") == {"jobs": 1, "state:queued": 1}
    assert_consistent(fake_store, fake_redis)


def test_enqueue_uses_the_message_queue_key(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req()
    message = msg("j1", request, queue=BULK_QUEUE, priority=3)
    fake_store.enqueue("j1", request, message, queue=BULK_QUEUE)
    assert fake_redis.lrange(queue_key(BULK_QUEUE, 3), 0, -1) == [message.payload]
    assert fake_redis.llen(BULK_QUEUE) == 0
    assert record(fake_store, "j1").queue == BULK_QUEUE


def test_second_enqueue_of_same_pair_is_duplicate(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    again = enqueue(fake_store, "j2", req(CASE.upper(), EVENT))
    assert (again.job_id, again.duplicate, again.state) == ("j1", True, State.QUEUED)
    assert fake_redis.llen(REALTIME_QUEUE) == 1
    assert fake_store.get("j2") is None
    assert fake_store.counters()["jobs"] == 1
    assert_consistent(fake_store, fake_redis)


def test_same_job_id_twice_is_duplicate(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    again = enqueue(fake_store, "j1", req(CASE_2, EVENT_2), force=True)
    assert (again.job_id, again.duplicate) == ("j1", True)
    assert fake_redis.llen(REALTIME_QUEUE) == 1
    assert record(fake_store, "j1").case_id == CASE


def test_enqueue_in_a_pipeline(fake_store: AuditStore, fake_redis: fakeredis.FakeRedis) -> None:
    pipe = fake_redis.pipeline(transaction=False)
    for i, event in enumerate((EVENT, EVENT_2, EVENT)):
        request = req(CASE, event)
        assert fake_store.enqueue(f"j{i}", request, msg(f"j{i}", request),
                                  queue=REALTIME_QUEUE, pipe=pipe) is None
    results = [AuditStore.parse_enqueued(reply) for reply in pipe.execute()]
    assert [(e.job_id, e.duplicate) for e in results] == [("j0", False), ("j1", False),
                                                          ("j0", True)]
    assert fake_redis.llen(REALTIME_QUEUE) == 2


def _drive(store: AuditStore, job_id: str, target: str) -> None:
    """Move a freshly enqueued job to `target` (a state, or 'settled:<outcome>')."""
    if target == "queued":
        return
    assert begin(store, job_id).verdict == "run"
    if target == "running":
        return
    if target == "retrying":
        assert retry(store, job_id, 1)
    elif target == "dead":
        assert settle(store, job_id, 1, "unauthorized", decision="dead", status=401)
    else:
        outcome = target.removeprefix("settled:")
        assert settle(store, job_id, 1, outcome, status=200 if outcome == "cancelled" else 400)


@pytest.mark.parametrize(
    "target",
    ["queued", "running", "retrying", "dead", "settled:cancelled", "settled:already_cancelled"],
)
def test_live_job_makes_later_enqueue_a_duplicate(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, target: str
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    _drive(fake_store, "j1", target)
    state = target.split(":")[0]
    again = enqueue(fake_store, "j2")
    assert (again.job_id, again.duplicate, again.state.value) == ("j1", True, state)
    assert fake_redis.llen(REALTIME_QUEUE) == 0
    assert fake_store.get("j2") is None
    assert_consistent(fake_store, fake_redis)


@pytest.mark.parametrize(
    "outcome", ["event_not_found", "not_custom_event", "invalid_request", "case_not_found"]
)
def test_settled_failure_does_not_block_a_new_job(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, outcome: str
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    _drive(fake_store, "j1", f"settled:{outcome}")
    again = enqueue(fake_store, "j2")
    assert (again.job_id, again.duplicate, again.state) == ("j2", False, State.QUEUED)
    assert fake_redis.llen(REALTIME_QUEUE) == 1
    assert fake_store.job_for_pair(CASE, EVENT) == "j2"
    assert record(fake_store, "j1").outcome == outcome  # the old record is kept
    assert_consistent(fake_store, fake_redis)


@pytest.mark.parametrize("target", ["queued", "running", "retrying", "dead"])
def test_force_is_refused_while_the_pair_has_a_job_in_flight_or_dead(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, target: str
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    _drive(fake_store, "j1", target)
    forced = enqueue(fake_store, "j2", force=True)
    assert (forced.job_id, forced.duplicate, forced.refused) == ("j1", True, "force")
    assert fake_redis.llen(REALTIME_QUEUE) == 0
    assert fake_store.get("j2") is None
    assert fake_store.job_for_pair(CASE, EVENT) == "j1"
    assert_consistent(fake_store, fake_redis)


@pytest.mark.parametrize("outcome", ["cancelled", "already_cancelled"])
def test_force_supersedes_a_settled_job(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, outcome: str
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    _drive(fake_store, "j1", f"settled:{outcome}")
    forced = enqueue(fake_store, "j2", force=True)
    assert (forced.job_id, forced.duplicate, forced.refused) == ("j2", False, "")
    assert fake_redis.llen(REALTIME_QUEUE) == 1
    assert fake_store.job_for_pair(CASE, EVENT) == "j2"
    assert_consistent(fake_store, fake_redis)


# -- begin / finish -----------------------------------------------------------------------


def test_lifecycle_retry_then_cancelled(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req(run_id="run-1")
    enqueue(fake_store, "j1", request)
    assert begin(fake_store, "j1", request) == Begun("run", 1, used=1)
    rec = record(fake_store, "j1")
    assert (rec.state, rec.attempt_count) == (State.RUNNING, 1)
    assert fake_store.counters() == {"jobs": 1, "state:queued": 0, "state:running": 1}
    assert_consistent(fake_store, fake_redis)

    assert retry(fake_store, "j1", 1)
    rec = record(fake_store, "j1")
    assert (rec.state, rec.outcome, rec.settled_at) == (State.RETRYING, None, None)
    assert [a.number for a in rec.attempts] == [1]
    assert_consistent(fake_store, fake_redis)

    # a second copy of the message (a redelivery) does not cut the 60 s backoff short
    early = begin(fake_store, "j1", request)
    assert (early.verdict, early.attempt) == ("not_due", 1) and 59 < early.due_in <= 60
    assert record(fake_store, "j1").state is State.RETRYING
    fake_redis.zadd(f"{P}:delayed", {"j1": 0})  # the backoff is over: promote brings it back
    assert fake_store.promote_due() == 1
    assert begin(fake_store, "j1", request) == Begun("run", 2, used=2)
    now = time.time()
    ok = Attempt(number=2, started_at=now, duration_ms=12.5, http_status=200,
                 error_class=None, error=None, verdict="cancelled")
    assert fake_store.finish("j1", owner=OWNER, attempt=ok, decision="settle",
                             outcome="cancelled", now=now)
    rec = record(fake_store, "j1")
    assert (rec.state, rec.outcome, rec.attempt_count) == (State.SETTLED, "cancelled", 2)
    assert rec.settled_at == pytest.approx(now)
    assert rec.attempts[-1] == ok
    assert fake_store.counters() == {
        "jobs": 1, "attempts": 2, "state:queued": 0, "state:running": 0, "state:retrying": 0,
        "state:settled": 1, "outcome:cancelled": 1,
    }
    assert_consistent(fake_store, fake_redis)


def test_finish_is_applied_once(fake_store: AuditStore, fake_redis: fakeredis.FakeRedis) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    assert settle(fake_store, "j1", 1, "cancelled", status=200)
    before = fake_store.counters()
    # the same owner's finish again (redis-py re-running it): "applied", nothing changes
    assert settle(fake_store, "j1", 1, "cancelled", status=200)
    assert retry(fake_store, "j1", 1)
    # anyone else's finish: refused
    assert not fake_store.finish("j1", owner="w2", attempt=attempt(1, 200, "event_not_found"),
                                 decision="settle", outcome="event_not_found")
    assert not fake_store.finish("j1", owner="w2", attempt=None, decision="dead",
                                 outcome="unauthorized")
    rec = record(fake_store, "j1")
    assert len(rec.attempts) == 1
    assert rec.outcome == "cancelled"
    assert fake_store.counters() == before
    assert fake_store.delayed_count() == 0
    assert_consistent(fake_store, fake_redis)


def test_finish_of_wrong_attempt_number_is_refused(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    assert not settle(fake_store, "j1", 2, "cancelled", status=200)
    assert record(fake_store, "j1").state is State.RUNNING


def test_finish_without_begin_is_refused(fake_store: AuditStore) -> None:
    enqueue(fake_store, "j1")
    assert not settle(fake_store, "j1", 1, "cancelled", status=200)
    assert not settle(fake_store, "missing", 1, "cancelled", status=200)
    assert record(fake_store, "j1").state is State.QUEUED


def test_redelivery_closes_the_stale_attempt(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    assert begin(fake_store, "j1", lease=0.001) == Begun("run", 1, used=1)
    time.sleep(0.01)  # the lease has ended: the worker is lost
    # the message came back to another worker
    assert begin(fake_store, "j1", owner="w2") == Begun("run", 2, used=2)
    rec = record(fake_store, "j1")
    assert len(rec.attempts) == 1
    lost = rec.attempts[0]
    assert (lost.number, lost.verdict, lost.error_class) == (1, "interrupted", "WorkerLost")
    assert rec.state is State.RUNNING
    assert fake_store.counters()["state:running"] == 1

    assert not settle(fake_store, "j1", 1, "cancelled", status=200)  # the old worker, late
    assert len(record(fake_store, "j1").attempts) == 1
    assert fake_store.finish("j1", owner="w2", attempt=attempt(2, 400, "already_cancelled"),
                             decision="settle", outcome="already_cancelled")
    rec = record(fake_store, "j1")
    assert [(a.number, a.verdict) for a in rec.attempts] == [
        (1, "interrupted"), (2, "already_cancelled")
    ]
    assert_consistent(fake_store, fake_redis)


@pytest.mark.parametrize(
    ("decision", "outcome", "state"),
    [("settle", "cancelled", "settled"), ("dead", "unauthorized", "dead")],
)
def test_begin_on_a_final_job_is_refused(
    fake_store: AuditStore, decision: str, outcome: str, state: str
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    settle(fake_store, "j1", 1, outcome, decision=decision)
    assert begin(fake_store, "j1") == Begun("settled", 0, state=state, outcome=outcome)
    assert record(fake_store, "j1").attempt_count == 1


def test_exhausted_when_attempts_reach_max(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    assert begin(fake_store, "j1", max_attempts=2) == Begun("run", 1, used=1)
    retry(fake_store, "j1", 1, delay=0)
    assert begin(fake_store, "j1", max_attempts=2) == Begun("run", 2, used=2)
    retry(fake_store, "j1", 2, delay=0)
    assert begin(fake_store, "j1", max_attempts=2) == Begun("exhausted", 2)
    rec = record(fake_store, "j1")
    assert (rec.state, rec.attempt_count) == (State.RETRYING, 2)
    # ending it without a call: attempt 0 is a note, not a call
    note = Attempt(number=0, started_at=time.time(), duration_ms=None, http_status=None,
                   error_class="NotCalled", error="all used", verdict="retries_exhausted")
    assert fake_store.finish("j1", owner=OWNER, attempt=note, decision="dead",
                             outcome="retries_exhausted")
    rec = record(fake_store, "j1")
    assert (rec.state, rec.outcome) == (State.DEAD, "retries_exhausted")
    assert rec.attempts[-1] == note
    assert fake_store.counters()["attempts"] == 2
    assert_consistent(fake_store, fake_redis)


def test_begin_for_unknown_job_creates_the_full_record(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req(run_id="run-9", requested_by="foreign", reason="because")
    got = fake_store.begin("jx", request, max_attempts=8, queue=BULK_QUEUE,
                           queue_key=queue_key(BULK_QUEUE, 6), now=500.25, owner=OWNER,
                           lease_seconds=30)
    assert got == Begun("run", 1, used=1)
    rec = record(fake_store, "jx")
    assert (rec.case_id, rec.event_id, rec.run_id) == (CASE, EVENT, "run-9")
    assert (rec.requested_by, rec.reason, rec.queue) == ("foreign", "because", BULK_QUEUE)
    assert (rec.state, rec.attempt_count, rec.created_at) == (State.RUNNING, 1, 500.25)
    raw = fake_store.job_fields(["jx"], ("source", "queue_key"))[0]
    assert raw["source"] == "broker"
    assert raw["queue_key"] == queue_key(BULK_QUEUE, 6)
    assert fake_store.job_for_pair(CASE, EVENT) == "jx"
    for index in ("idx:all", "idx:run:run-9", "idx:state:running"):
        assert fake_redis.zscore(f"{P}:{index}", "jx") == 500.25, index
    assert fake_store.lookup_ids(case_id=CASE) == fake_store.lookup_ids(event_id=EVENT) == ["jx"]
    assert fake_store.counters() == {"jobs": 1, "state:queued": 0, "state:running": 1}
    assert fake_store.counters("run-9") == {"jobs": 1, "state:queued": 0, "state:running": 1}
    assert settle(fake_store, "jx", 1, "cancelled", status=200)
    assert_consistent(fake_store, fake_redis)


def test_begin_for_unknown_job_keeps_an_existing_pair(fake_store: AuditStore) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "jx")
    assert fake_store.job_for_pair(CASE, EVENT) == "j1"


def test_retention_trims_what_ended_longer_ago_than_it(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    """The outcome index, scored by when a job ended, is retention's list (no set of its own)."""
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    assert fake_store.finish("j1", owner=OWNER, attempt=attempt(1, 200, "cancelled"),
                             decision="settle", outcome="cancelled", retention_seconds=3600,
                             now=1000.0)
    assert fake_redis.zscore(f"{P}:idx:outcome:cancelled", "j1") == 1000.0
    assert fake_redis.ttl(f"{P}:job:j1") == -1  # deleted by the trim, with its index entries
    assert fake_store.trim(retention_seconds=3600, now=4599.0) == 0
    assert fake_store.trim(retention_seconds=3600, now=4601.0) == 1
    assert fake_store.get("j1") is None and fake_store.lookup_ids(case_id=CASE) == []
    assert fake_redis.zcard(f"{P}:idx:all") == 0


def test_no_retention_when_zero(fake_store: AuditStore, fake_redis: fakeredis.FakeRedis) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    settle(fake_store, "j1", 1, "cancelled", status=200)
    assert fake_store.trim(retention_seconds=0, now=10**12) == 0
    assert fake_store.get("j1") is not None


def test_retry_without_message_is_a_programming_error(fake_store: AuditStore) -> None:
    with pytest.raises(ValueError):
        fake_store.finish("j1", owner=OWNER, attempt=attempt(1), decision="retry",
                          delay_seconds=1.0)


# -- retries, the delayed set, defer ------------------------------------------------------


def test_retry_waits_in_the_delayed_set_until_due(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req()
    enqueue(fake_store, "j1", request, queue=BULK_QUEUE)
    fake_redis.delete(BULK_QUEUE)
    begin(fake_store, "j1", request)
    retry_message = msg("j1", request, queue=BULK_QUEUE, priority=6)
    now = time.time()
    assert fake_store.finish("j1", owner=OWNER, attempt=attempt(1), decision="retry",
                             delay_seconds=0.25, retry_message=retry_message, now=now)
    rec = record(fake_store, "j1")
    assert rec.next_attempt_at == pytest.approx(now + 0.25, abs=0.01)
    assert fake_store.delayed_count() == 1

    assert fake_store.promote_due() == 0  # not yet due
    assert fake_redis.llen(retry_message.queue_key) == 0
    wait_for(lambda: fake_store.promote_due() == 1, timeout=5, interval=0.02)
    assert fake_redis.lrange(retry_message.queue_key, 0, -1) == [retry_message.payload]
    assert fake_redis.keys(f"{BULK_QUEUE}*") == [retry_message.queue_key]
    assert fake_store.delayed_count() == 0
    assert fake_redis.hlen(f"{P}:delayed:msg") == 0
    assert fake_store.promote_due() == 0  # moved once only
    assert fake_redis.llen(retry_message.queue_key) == 1


def test_promote_moves_only_the_due_ones(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    for job_id, event, delay in (("soon", EVENT, 0.0), ("later", EVENT_2, 60.0)):
        request = req(CASE, event)
        enqueue(fake_store, job_id, request)
        begin(fake_store, job_id, request)
        retry(fake_store, job_id, 1, delay=delay, message=msg(job_id, request))
    fake_redis.delete(REALTIME_QUEUE)
    assert fake_store.promote_due() == 1
    pushed = [json.loads(p)["headers"]["id"] for p in fake_redis.lrange(REALTIME_QUEUE, 0, -1)]
    assert pushed == ["soon"]
    assert fake_redis.zrange(f"{P}:delayed", 0, -1) == ["later"]


def test_promote_respects_its_limit(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    for i in range(5):
        request = req(CASE, f"{EVENT[:-2]}{i:02x}")
        enqueue(fake_store, f"j{i}", request)
        begin(fake_store, f"j{i}", request)
        retry(fake_store, f"j{i}", 1, delay=0.0, message=msg(f"j{i}", request))
    fake_redis.delete(REALTIME_QUEUE)
    assert fake_store.promote_due(limit=2) == 2
    assert fake_store.promote_due(limit=10) == 3
    assert fake_redis.llen(REALTIME_QUEUE) == 5


def test_defer_parks_without_using_an_attempt(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req()
    enqueue(fake_store, "j1", request)
    fake_redis.delete(REALTIME_QUEUE)  # the worker took the message
    before = fake_store.counters()
    message = msg("j1", request)
    assert fake_store.defer("j1", delay_seconds=0.2, message=message)
    rec = record(fake_store, "j1")
    assert (rec.state, rec.attempt_count, rec.attempts) == (State.QUEUED, 0, ())
    assert fake_store.counters() == before
    assert fake_store.delayed_count() == 1
    assert fake_store.promote_due() == 0
    wait_for(lambda: fake_store.promote_due() == 1, timeout=5, interval=0.02)
    assert fake_redis.lrange(REALTIME_QUEUE, 0, -1) == [message.payload]


def test_defer_leaves_a_final_job_alone(fake_store: AuditStore) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, "j1")
    settle(fake_store, "j1", 1, "cancelled", status=200)
    assert not fake_store.defer("j1", delay_seconds=0.0, message=msg("j1", req()))
    assert fake_store.delayed_count() == 0


# -- reads --------------------------------------------------------------------------------


@pytest.fixture
def three_jobs(fake_store: AuditStore) -> AuditStore:
    """j1 (case, event, run-a, t=100) cancelled; j2 (case, event 2, run-b, t=200)
    event_not_found; j3 (case 2, event 3, run-a, t=300) queued."""
    enqueue(fake_store, "j1", req(CASE, EVENT, run_id="run-a"), now=100.0)
    enqueue(fake_store, "j2", req(CASE, EVENT_2, run_id="run-b"), now=200.0)
    enqueue(fake_store, "j3", req(CASE_2, EVENT_3, run_id="run-a"), now=300.0)
    begin(fake_store, "j1")
    settle(fake_store, "j1", 1, "cancelled", status=200)
    begin(fake_store, "j2", req(CASE, EVENT_2, run_id="run-b"))
    settle(fake_store, "j2", 1, "event_not_found")
    return fake_store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(Query(), ["j3", "j2", "j1"], id="all-newest-first"),
        pytest.param(Query(case_id=CASE), ["j2", "j1"], id="case"),
        pytest.param(Query(event_id=EVENT_3), ["j3"], id="event"),
        pytest.param(Query(outcome="cancelled"), ["j1"], id="outcome"),
        pytest.param(Query(outcome="event_not_found"), ["j2"], id="outcome-2"),
        pytest.param(Query(state="queued"), ["j3"], id="state"),
        pytest.param(Query(state="settled"), ["j2", "j1"], id="state-settled"),
        pytest.param(Query(run_id="run-a"), ["j3", "j1"], id="run"),
        pytest.param(Query(since=150.0), ["j3", "j2"], id="since"),
        pytest.param(Query(limit=2), ["j3", "j2"], id="limit"),
        pytest.param(Query(case_id=CASE, outcome="cancelled"), ["j1"], id="case-and-outcome"),
        pytest.param(Query(run_id="run-a", state="settled"), ["j1"], id="run-and-state"),
        pytest.param(Query(case_id=CASE, since=150.0), ["j2"], id="case-since"),
        pytest.param(Query(run_id="nope"), [], id="unknown-run"),
    ],
)
def test_query(three_jobs: AuditStore, query: Query, expected: list[str]) -> None:
    assert [rec.job_id for rec in three_jobs.query(query)] == expected


def test_query_with_attempts(three_jobs: AuditStore) -> None:
    without = three_jobs.query(Query(case_id=CASE))
    assert all(rec.attempts == () for rec in without)
    with_attempts = three_jobs.query(Query(case_id=CASE), with_attempts=True)
    assert [len(rec.attempts) for rec in with_attempts] == [1, 1]


def test_query_limit_beyond_a_page(fake_store: AuditStore) -> None:
    for i in range(60):
        enqueue(fake_store, f"j{i:02d}", req(CASE, f"{EVENT[:-2]}{i:02x}"), now=float(i))
    got = fake_store.query(Query(state="queued", limit=55))
    assert [rec.job_id for rec in got] == [f"j{i:02d}" for i in range(59, 4, -1)]


def test_consistency_of_three_jobs(three_jobs: AuditStore, fake_redis: fakeredis.FakeRedis) -> None:
    assert three_jobs.counters("run-a") == {
        "jobs": 2, "attempts": 1, "state:queued": 1, "state:running": 0, "state:settled": 1,
        "outcome:cancelled": 1,
    }
    assert_consistent(three_jobs, fake_redis)


def test_calls_last_counts_by_status(fake_store: AuditStore) -> None:
    statuses: list[int | None] = [500, 500, 503, None, 200]
    for i, status in enumerate(statuses):
        request = req(CASE, f"{EVENT[:-2]}{i:02x}")
        enqueue(fake_store, f"j{i}", request)
        begin(fake_store, f"j{i}", request)
        if status == 200:
            assert settle(fake_store, f"j{i}", 1, "cancelled", status=200)
        else:
            assert retry(fake_store, f"j{i}", 1, status=status, message=msg(f"j{i}", request))
    # a note (no call) and a refused finish are not calls
    enqueue(fake_store, "k", req(CASE_2, EVENT))
    fake_store.finish("k", owner=OWNER, attempt=None, decision="settle", outcome="invalid_request")
    assert not fake_store.finish("j4", owner="w2", attempt=attempt(1, 200, "cancelled"),
                                 decision="settle", outcome="cancelled")
    assert fake_store.calls_last() == {"500": 2, "503": 1, "none": 1, "200": 1}


def test_get_unknown_is_none(fake_store: AuditStore) -> None:
    assert fake_store.get("nope") is None
    assert fake_store.get_many(["nope"]) == []
    assert fake_store.job_for_pair(CASE, EVENT) is None


def test_attempt_round_trip() -> None:
    a = Attempt(number=3, started_at=1.5, duration_ms=2.0, http_status=400,
                error_class="FinalAnswer", error="Invalid action", verdict="invalid_request",
                retry_in_seconds=None, raw_body='{"x":1}')
    assert Attempt.decode(a.encode()) == a
    assert a.to_json()["started_at"] == "1970-01-01T00:00:01.500Z"
    assert "raw_body" not in a.to_json()


def test_record_json_schema(fake_store: AuditStore) -> None:
    enqueue(fake_store, "j1", req(run_id="r"), now=0.25)
    data = record(fake_store, "j1").to_json()
    assert data["created_at"] == "1970-01-01T00:00:00.250Z"
    assert data["settled_at"] is None
    assert (data["state"], data["outcome"], data["attempts"]) == ("queued", None, [])


def test_query_pages_over_a_changing_index_without_doubles_or_gaps(
    fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs land at the newest end (and leave a state's index) while a query pages: each
    job still comes out once. Paging by offset read `j59` twice here."""
    for i in range(60):
        enqueue(fake_store, f"j{i:02d}", req(CASE, f"{EVENT[:-2]}{i:02x}"), now=float(i))
    read = fake_store.get_many
    arrived = iter(range(60, 70))

    def get_many_while_jobs_arrive(ids: list[str], **kw: bool) -> list[JobRecord]:
        n = next(arrived, None)
        if n is not None:  # a newer job, during the read of a page
            enqueue(fake_store, f"j{n:02d}", req(CASE, f"{EVENT[:-2]}{n:02x}"), now=100.0 + n)
        return read(ids, **kw)

    monkeypatch.setattr(fake_store, "get_many", get_many_while_jobs_arrive)
    got = [rec.job_id for rec in fake_store.query(Query(state="queued", limit=1000))]
    assert len(got) == len(set(got))
    assert set(got) >= {f"j{i:02d}" for i in range(60)}


def test_query_reads_past_a_page_of_jobs_sharing_one_score(fake_store: AuditStore) -> None:
    for i in range(120):
        enqueue(fake_store, f"j{i:03d}", req(CASE, f"{EVENT[:-3]}{i:03x}"), now=5.0)
    got = [rec.job_id for rec in fake_store.query(Query(state="queued", limit=100))]
    assert len(got) == len(set(got)) == 100
