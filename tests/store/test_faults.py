"""The store under faults, on fakeredis (with its Lua): leases, the reaper, job-id conflicts,
poisoned delayed entries, retention, and every state-changing script run twice.

Redis-py re-runs a script after a socket timeout (`retry_on_timeout`), so each script that
changes state is called here twice with the same arguments: the second call must report what
the first did and change nothing.
"""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, queue_key
from cancelq.store.records import Attempt, Begun
from cancelq.store.run_index import record_intake
from tests.store.test_audit import (
    CASE,
    CASE_2,
    EVENT,
    EVENT_2,
    P,
    assert_consistent,
    enqueue,
    msg,
    record,
    req,
)


def begin(store: AuditStore, job_id: str = "j1", owner: str = "w1", *, lease: float = 30.0,
          request: CancelRequest | None = None, max_attempts: int = 8,
          retention: float = 0) -> Begun:
    return store.begin(job_id, request or req(), max_attempts=max_attempts,
                       queue=REALTIME_QUEUE, queue_key=REALTIME_QUEUE, owner=owner,
                       lease_seconds=lease, retention_seconds=retention)


def call(number: int, status: int | None, verdict: str) -> Attempt:
    return Attempt(number=number, started_at=time.time(), duration_ms=1.0, http_status=status,
                   error_class=None if status == 200 else "TransientResponse",
                   error=None, verdict=verdict)


def finish(store: AuditStore, owner: str, number: int, outcome: str = "cancelled", *,
           decision: str = "settle", retention: float = 0, now: float | None = None) -> bool:
    return store.finish("j1", attempt=call(number, 200, outcome), owner=owner,
                        decision=decision, outcome=outcome,  # type: ignore[arg-type]
                        retention_seconds=retention, now=now,
                        retry_message=msg("j1", req()) if decision == "retry" else None)


def expire_leases() -> None:
    time.sleep(0.02)


# -- 1. leases: a second copy never calls, never closes the first -------------------------


def test_a_second_copy_finds_the_lease_live_and_changes_nothing(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    assert begin(fake_store, owner="w1") == Begun("run", 1, used=1)
    before = fake_redis.hgetall(f"{P}:job:j1")
    second = begin(fake_store, owner="w2")
    assert (second.verdict, second.attempt) == ("leased", 1)
    assert 29 < second.lease_left <= 30
    assert fake_redis.hgetall(f"{P}:job:j1") == before
    assert record(fake_store, "j1").attempts == ()  # no WorkerLost note
    # the first copy's answer is recorded, as the cancel it was
    assert finish(fake_store, "w1", 1, "cancelled")
    rec = record(fake_store, "j1")
    assert (rec.state, rec.outcome, rec.attempt_count) == (State.SETTLED, "cancelled", 1)
    assert begin(fake_store, owner="w2").verdict == "settled"
    assert_consistent(fake_store, fake_redis)


def test_finish_applies_only_for_the_lease_owner(fake_store: AuditStore) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1")
    assert not finish(fake_store, "w2", 1, "cancelled")
    assert not fake_store.finish("j1", attempt=None, owner="w2", decision="settle",
                                 outcome="invalid_request")
    assert record(fake_store, "j1").state is State.RUNNING


def test_only_an_expired_lease_means_the_worker_was_lost(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1", lease=0.005)
    expire_leases()
    assert begin(fake_store, owner="w2") == Begun("run", 2, used=2)
    lost, = record(fake_store, "j1").attempts
    assert (lost.number, lost.error_class, lost.verdict) == (1, "WorkerLost", "interrupted")
    assert not finish(fake_store, "w1", 1)  # the lost worker, late
    # its call had reached Care360: the second call hears "already cancelled"; both kept
    assert finish(fake_store, "w2", 2, "already_cancelled")
    rec = record(fake_store, "j1")
    assert [(a.number, a.verdict) for a in rec.attempts] == [
        (1, "interrupted"), (2, "already_cancelled")]
    assert_consistent(fake_store, fake_redis)


def test_renew_extends_only_the_owners_lease(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    enqueue(fake_store, "j2", req(CASE, EVENT_2))
    begin(fake_store, "j1", "w1", lease=0.5)
    begin(fake_store, "j2", "w2", lease=0.5, request=req(CASE, EVENT_2))
    lost = fake_store.renew_leases(60, [("j1", "w1"), ("j2", "someone-else")])
    assert lost == ["j2"]
    assert fake_redis.zscore(f"{P}:leases", "j1") > time.time() + 50  # type: ignore[operator]
    assert fake_redis.zscore(f"{P}:leases", "j2") < time.time() + 1  # type: ignore[operator]
    time.sleep(0.6)
    assert begin(fake_store, "j1", "w3").verdict == "leased"
    assert fake_store.expired_leases(10) == ["j2"]


# -- 2. the reaper: no job stays running -------------------------------------------------


def test_reaper_turns_an_expired_attempt_into_a_retry(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    begin(fake_store, owner="w1", lease=0.3)
    message = msg("j1", req())
    assert fake_store.reap("j1", message, max_attempts=8, delay_seconds=0) is None  # live
    time.sleep(0.35)
    assert fake_store.expired_leases(10) == ["j1"]
    assert fake_store.reap("j1", message, max_attempts=8, delay_seconds=0) == "retrying"
    assert fake_store.reap("j1", message, max_attempts=8, delay_seconds=0) is None  # once
    assert fake_store.expired_leases(10) == []
    rec = record(fake_store, "j1")
    assert rec.state is State.RETRYING
    assert [a.error_class for a in rec.attempts] == ["WorkerLost"]
    assert fake_store.promote_due() == 1
    assert fake_redis.lrange(REALTIME_QUEUE, 0, -1) == [message.payload]
    assert not finish(fake_store, "w1", 1)  # the hung worker wakes up: too late
    assert_consistent(fake_store, fake_redis)


def test_reaper_dead_letters_a_job_whose_budget_is_spent(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1", lease=0.005, max_attempts=1)
    expire_leases()
    assert fake_store.reap("j1", msg("j1", req()), max_attempts=1, delay_seconds=0) == "dead"
    rec = record(fake_store, "j1")
    assert (rec.state, rec.outcome) == (State.DEAD, "retries_exhausted")
    assert fake_store.delayed_count() == 0
    assert_consistent(fake_store, fake_redis)


# -- 3. a job id belongs to one (case, event) ---------------------------------------------


def test_a_message_reusing_a_job_id_is_rejected_on_a_job_of_its_own(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    before = fake_redis.hgetall(f"{P}:job:j1")
    foreign = begin(fake_store, owner="w9", request=req(CASE_2, EVENT_2))
    assert foreign.verdict == "conflict" and foreign.rejected_job not in (None, "j1")
    assert fake_redis.hgetall(f"{P}:job:j1") == before  # untouched, not run
    rejected = record(fake_store, str(foreign.rejected_job))
    assert (rejected.case_id, rejected.event_id) == (CASE_2, EVENT_2)
    assert (rejected.state, rejected.outcome) == (State.SETTLED, "invalid_request")
    assert rejected.attempts[0].error_class == "JobIdConflict"
    assert fake_store.job_for_pair(CASE_2, EVENT_2) is None  # a rejection holds no pair
    assert begin(fake_store, owner="w1") == Begun("run", 1, used=1)  # the real job runs
    assert_consistent(fake_store, fake_redis)


def test_an_invalid_message_never_settles_an_existing_job(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    fields = {"case_id": "nope", "event_id": EVENT}
    kwargs: dict[str, Any] = {"queue": REALTIME_QUEUE, "queue_key": REALTIME_QUEUE}
    on = fake_store.reject("j1", fields, "case_id: not a UUID", **kwargs)
    assert on != "j1"
    assert record(fake_store, "j1").state is State.QUEUED
    assert record(fake_store, on).outcome == "invalid_request"
    # a new id is used as is; the same bad message again changes nothing
    assert fake_store.reject("k1", fields, "case_id: not a UUID", **kwargs) == "k1"
    assert fake_store.reject("k1", fields, "case_id: not a UUID", **kwargs) == "k1"
    assert len(record(fake_store, "k1").attempts) == 1
    assert_consistent(fake_store, fake_redis)


# -- 4. the delayed set cannot be poisoned ------------------------------------------------


def test_a_bad_delayed_entry_is_set_aside_and_the_rest_keep_flowing(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    keys = Keys(P)
    fake_redis.hset("not-a-list", "x", "1")
    bad = {
        "wrongtype": f"{REALTIME_QUEUE}-x\nmsg",  # no queue of ours
        "hash": "not-a-list\nmsg",                 # a key of another type
        "nosep": "just a payload",                 # no separator at all
    }
    for job_id, entry in bad.items():
        fake_redis.zadd(keys.delayed, {job_id: 0})
        fake_redis.hset(keys.delayed_messages, job_id, entry)
    fake_redis.zadd(keys.delayed, {"orphan": 0})  # an id with no entry
    fake_store.defer("good", delay_seconds=0, message=msg("good", req(), queue=BULK_QUEUE,
                                                          priority=6))
    done = fake_store.promote(10)
    assert done.moved == 1
    assert sorted(done.bad) == ["hash", "nosep", "orphan", "wrongtype"]
    assert fake_redis.llen(queue_key(BULK_QUEUE, 6)) == 1
    assert fake_redis.type("not-a-list") == "hash"
    assert fake_store.delayed_bad() == {**bad, "orphan": ""}
    assert fake_store.delayed_count() == 0


# -- 6. bounded Redis: retention trims every trace of a job -------------------------------


def test_trim_deletes_expired_jobs_with_their_index_entries(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    long_ago = time.time() - 1000
    enqueue(fake_store, "j1", req(run_id="r1"), now=long_ago)
    begin(fake_store, owner="w1", request=req(run_id="r1"))
    assert finish(fake_store, "w1", 1, "unauthorized", decision="dead", retention=10,
                  now=long_ago)
    enqueue(fake_store, "j2", req(CASE, EVENT_2, run_id="r1"))  # live: kept
    assert fake_store.counters()["state:dead"] == 1
    assert fake_store.trim(retention_seconds=10) == 1
    assert fake_store.trim(retention_seconds=10) == 0
    assert fake_store.get("j1") is None
    assert not fake_redis.exists(f"{P}:job:j1")
    assert fake_store.lookup_ids(case_id=CASE) == fake_store.lookup_ids(event_id=EVENT_2) \
        == ["j2"]
    assert fake_store.lookup_ids(event_id=EVENT) == []
    for index in ("idx:all", "idx:run:r1", "idx:state:dead", "idx:outcome:unauthorized",
                  "archive:pending"):
        assert fake_redis.zscore(f"{P}:{index}", "j1") is None, index
    counters = fake_store.counters()
    assert counters["state:dead"] == 0 and counters["state:queued"] == 1
    assert counters["jobs"] == 2 and counters["outcome:unauthorized"] == 1  # lifetime totals
    assert fake_store.counters("r1")["state:dead"] == 0
    assert record(fake_store, "j2").state is State.QUEUED


def test_trim_drops_a_run_with_no_job_left(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    long_ago = time.time() - 1000
    enqueue(fake_store, "j1", req(run_id="r1"), now=long_ago)
    begin(fake_store, owner="w1", request=req(run_id="r1"))
    finish(fake_store, "w1", 1, "cancelled", retention=10, now=long_ago)
    record_intake(fake_store, "r1", {"rows": 2, "accepted": 1, "invalid": 1}, [(3, "bad")])
    assert fake_store.trim(retention_seconds=10) == 1
    assert not fake_redis.exists(f"{P}:run:r1:stats", f"{P}:idx:run:r1", f"{P}:run:r1:intake")
    assert fake_redis.zscore(f"{P}:runs", "r1") is None


# -- 7, 8. every state-changing script twice; never two live jobs for a pair ------------


def twice(store: AuditStore, name: str, args: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
    first = store.scripts(name, args)  # type: ignore[arg-type]
    snapshot = dump(store.redis)
    second = store.scripts(name, args)  # type: ignore[arg-type]
    return first, second, snapshot


def dump(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(r.keys("*")):
        kind = r.type(key)
        out[key] = {"hash": r.hgetall, "list": lambda k: r.lrange(k, 0, -1),
                    "zset": lambda k: r.zrange(k, 0, -1), "string": r.get,
                    }[kind](key)
    return out


def test_enqueue_run_twice_is_the_producers_own_job_not_a_duplicate(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    message = msg("j1", req())
    args = [P, "j1", CASE, EVENT, "", "", "", "1000.0", "0", REALTIME_QUEUE,
            message.queue_key, message.payload]
    first, second, after_first = twice(fake_store, "enqueue", args)
    assert first == [1, "j1", "queued", ""] and second == first
    assert dump(fake_redis) == after_first
    assert fake_redis.llen(REALTIME_QUEUE) == 1


def test_begin_run_twice_is_the_same_attempt(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    args = [P, "j1", CASE, EVENT, "", "", "", "1000.0", 8, REALTIME_QUEUE, REALTIME_QUEUE,
            "w1", "30", "alt", "{}", 0]
    first, second, after_first = twice(fake_store, "begin", args)
    assert first == second == ["run", 1, 1]
    assert dump(fake_redis) == after_first
    assert record(fake_store, "j1").attempts == ()  # no phantom WorkerLost


def test_finish_and_reap_and_replay_run_twice_report_applied_and_change_nothing(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1")
    args = [P, "j1", "1", call(1, 500, "retries_exhausted").encode(), "dead",
            "retries_exhausted", "1000.0", "0", "", 0, 500, "w1", "0"]
    first, second, after_first = twice(fake_store, "finish", args)
    assert first == second == [1, "dead"]
    assert dump(fake_redis) == after_first

    message = msg("j1", req())
    note = Attempt(0, 1001.0, None, None, "Replay", "replayed by ops", "replayed").encode()
    args = [P, "j1", "1001.0", note, message.queue_key, message.payload, "token-1"]
    first, second, after_first = twice(fake_store, "replay", args)
    assert first == [1, "queued", 1, ""] and second == first
    assert dump(fake_redis) == after_first
    assert fake_redis.llen(REALTIME_QUEUE) == 2  # the enqueue's and one replay's

    fake_redis.delete(REALTIME_QUEUE)
    begin(fake_store, owner="w2", lease=0.005)
    expire_leases()
    args = [P, "j1", 8, "0", f"{message.queue_key}\n{message.payload}", "1002.0", 0]
    first, second, after_first = twice(fake_store, "reap", args)
    assert first == [1, "retrying"] and second == [0, "retrying"]
    assert dump(fake_redis) == after_first
    assert_consistent(fake_store, fake_redis)


def test_defer_promote_trim_and_reject_run_twice_change_nothing_more(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    fake_redis.delete(REALTIME_QUEUE)
    entry = f"{REALTIME_QUEUE}\npayload"
    first, second, _ = twice(fake_store, "defer", [P, "j1", "0", entry])
    assert first == second == 1 and fake_store.delayed_count() == 1
    first, second, after_first = twice(fake_store, "promote", [P, 10, REALTIME_QUEUE])
    assert first == [1] and second == [0]
    assert dump(fake_redis) == after_first
    first, second, after_first = twice(fake_store, "trim", [P, 10, "0", 10])
    assert dump(fake_redis) == after_first
    args = [P, "k1", "alt", "nope", EVENT, "", "", "1000.0", REALTIME_QUEUE, REALTIME_QUEUE,
            "{}", 0]
    first, second, after_first = twice(fake_store, "reject", args)
    assert first == [1, "k1"] and second == [0, "k1"]
    assert dump(fake_redis) == after_first


def test_replay_is_refused_while_another_live_job_holds_the_pair(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    # a foreign message made j0 for the pair before our producer's j1 existed
    begin(fake_store, "j0", owner="w0", max_attempts=1)
    fake_store.finish("j0", attempt=call(1, 401, "unauthorized"), owner="w0",
                      decision="dead", outcome="unauthorized")
    fake_redis.hset(f"{P}:job:j0", "N", 1)  # as if it had given its pair up
    enqueue(fake_store, "j1")  # the pair is j1's now, queued
    done = fake_store.replay("j0", msg("j0", req()), who="ops")
    assert (done.applied, done.pair_holder) == (False, "j1")
    assert record(fake_store, "j0").state is State.DEAD
    assert fake_store.job_for_pair(CASE, EVENT) == "j1"


@pytest.mark.parametrize("outcome", ["unauthorized", "retries_exhausted"])
def test_replay_takes_the_pair_back(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, outcome: str
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1")
    fake_store.finish("j1", attempt=call(1, 500, outcome), owner="w1", decision="dead",
                      outcome=outcome)
    fake_redis.delete(f"{P}:pair:{CASE}:{EVENT}")
    assert fake_store.replay("j1", msg("j1", req()), who="ops").applied
    assert fake_store.job_for_pair(CASE, EVENT) == "j1"
    assert_consistent(fake_store, fake_redis)


# -- 7. a foreign message for a pair with a live job is a duplicate of it ------------------


def test_a_foreign_message_for_a_pair_with_a_live_job_is_a_duplicate_of_it(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")  # the producer's job, queued
    args = fake_store._begin_args("f1", req(), "w9", 8, REALTIME_QUEUE, REALTIME_QUEUE, 30.0,
                                  None, None)
    first = fake_store.scripts("begin", args)
    assert [str(v) for v in first] == ["duplicate", "j1", "queued"]
    fake_store.scripts("begin", args)  # redis-py re-running it: one note, not two
    assert fake_store.get("f1") is None  # no second job: nothing to call
    rec = record(fake_store, "j1")
    assert (rec.state, rec.attempt_count) == (State.QUEUED, 0)
    assert [(a.number, a.verdict, a.error_class) for a in rec.attempts] == [
        (0, "duplicate", "Duplicate")]
    assert rec.attempts[0].error is not None and "f1" in rec.attempts[0].error
    assert begin(fake_store, "j1", "w1") == Begun("run", 1, used=1)  # the job itself runs
    assert_consistent(fake_store, fake_redis)


def test_the_same_foreign_message_again_later_is_noted_again(fake_store: AuditStore) -> None:
    """Only a re-run of the same call is noted once: a later copy (another time) is its own
    note, as v1 wrote it."""
    enqueue(fake_store, "j1")
    for at in (1000.0, 1000.0, 2000.0):
        args = fake_store._begin_args("f1", req(), "w9", 8, REALTIME_QUEUE, REALTIME_QUEUE,
                                      30.0, None, at)
        fake_store.scripts("begin", args)
    notes = record(fake_store, "j1").attempts
    assert [(a.verdict, a.started_at) for a in notes] == [("duplicate", 1000.0),
                                                          ("duplicate", 2000.0)]


def test_a_foreign_message_first_takes_the_pair_and_the_producer_gets_a_duplicate(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    assert begin(fake_store, "f1", "w1") == Begun("run", 1, used=1)
    dup = enqueue(fake_store, "j1")
    assert (dup.job_id, dup.duplicate) == ("f1", True)
    assert fake_store.get("j1") is None
    assert_consistent(fake_store, fake_redis)


# -- 10. a waiting job's second copy waits too ----------------------------------------------


def test_a_second_copy_of_a_retrying_job_does_not_start_before_its_due_time(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    enqueue(fake_store, "j1")
    begin(fake_store, owner="w1")
    assert fake_store.finish("j1", attempt=call(1, 503, "retry"), owner="w1", decision="retry",
                             delay_seconds=0.4, retry_message=msg("j1", req()))
    early = begin(fake_store, owner="w2")
    assert early.verdict == "not_due" and 0 < early.due_in <= 0.4
    rec = record(fake_store, "j1")
    assert (rec.state, rec.attempt_count) == (State.RETRYING, 1)
    assert fake_redis.zscore(f"{P}:delayed", "j1") is not None  # the entry still brings it back
    time.sleep(0.45)
    assert fake_store.promote_due() == 1
    assert begin(fake_store, owner="w3") == Begun("run", 2, used=2)
