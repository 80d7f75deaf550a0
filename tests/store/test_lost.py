"""cancelq/store/lost.py on a real redis-server: a waiting job whose message is in no queue,
unacked or delayed set is published again, once, with a note; a job whose message is
somewhere is never touched."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from cancelq.core.lifecycle import State, Verdict
from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS
from cancelq.store.lost import UNACKED_KEY, find_and_republish, placed_job_ids, republish
from cancelq.store.messages import message_job_ids
from cancelq.store.queues import REALTIME_QUEUE
from producers.enqueue import enqueue_cancellation

AGE = 0.3  # stands for the visibility timeout


def _job(store: AuditStore) -> str:
    return enqueue_cancellation(str(uuid.uuid4()), str(uuid.uuid4()), store=store).job_id


def _pass(store: AuditStore, owner: str = "test") -> tuple[tuple[str, ...], tuple[str, ...]]:
    store.redis.delete(store.keys.lost_lock)  # each call is a pass of its own here
    done = find_and_republish(store, min_age=AGE, owner=owner)
    assert done is not None
    return done.suspects, done.republished


def test_a_lost_message_is_published_again_once_with_a_note(real_store: AuditStore) -> None:
    lost, kept = _job(real_store), _job(real_store)
    payloads = real_store.redis.lrange(REALTIME_QUEUE, 0, -1)
    mine = next(p for p in payloads if message_job_ids(p) == [lost])
    real_store.redis.lrem(REALTIME_QUEUE, 1, str(mine))  # the broker lost it
    assert _pass(real_store) == ((), ())  # too young: a message may be in transit
    time.sleep(AGE + 0.1)
    assert _pass(real_store) == ((lost,), ())  # a suspect, not yet published
    assert _pass(real_store) == ((lost,), (lost,))  # still missing: published again
    assert _pass(real_store) == ((), ())  # once: its message is back in the queue
    ids = [job for p in real_store.redis.lrange(REALTIME_QUEUE, 0, -1)
           for job in message_job_ids(p)]
    assert sorted(ids) == sorted([lost, kept])
    record = real_store.get(lost)
    assert record is not None and record.state is State.QUEUED
    (note,) = record.attempts
    assert note.number == 0 and note.error_class == "MessageLost"
    assert note.verdict == Verdict.REPUBLISHED.value
    assert real_store.counters().get("attempts", 0) == 0  # a note is not a call


def test_messages_in_unacked_or_delayed_are_found_and_left_alone(real_store: AuditStore) -> None:
    unacked, delayed = _job(real_store), _job(real_store)
    for payload in real_store.redis.lrange(REALTIME_QUEUE, 0, -1):
        if message_job_ids(payload) == [unacked]:
            message = json.loads(payload)
            entry = json.dumps([message, "", REALTIME_QUEUE])
            real_store.redis.hset(UNACKED_KEY, message["properties"]["delivery_tag"], entry)
        real_store.redis.lrem(REALTIME_QUEUE, 1, str(payload))
    real_store.redis.zadd(real_store.keys.delayed, {delayed: time.time() + 3600})
    time.sleep(AGE + 0.1)
    assert unacked in placed_job_ids(real_store)
    assert _pass(real_store) == ((), ())
    assert _pass(real_store) == ((), ())
    real_store.redis.delete(UNACKED_KEY)


def test_one_pass_at_a_time(real_store: AuditStore) -> None:
    assert find_and_republish(real_store, min_age=AGE, owner="a") is not None
    assert find_and_republish(real_store, min_age=AGE, owner="b") is None


@pytest.mark.parametrize("state", [State.RUNNING, State.SETTLED])
def test_republish_refuses_a_job_that_no_longer_waits(
    real_store: AuditStore, state: State
) -> None:
    job = _job(real_store)
    real_store.redis.delete(REALTIME_QUEUE)
    real_store.redis.hset(real_store.keys.job(job), FIELDS["state"], state.value)
    time.sleep(AGE + 0.1)
    assert republish(real_store, job, min_age=AGE) is False
    assert real_store.redis.llen(REALTIME_QUEUE) == 0
