"""`worker.scheduler.RetryScheduler` on fakeredis: promote (a poisoned entry), reap, trim."""

from __future__ import annotations

import time

import fakeredis
import pytest

from cancelq.core.lifecycle import State
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, queue_key
from tests.store.test_audit import enqueue, msg, req
from worker.scheduler import RetryScheduler

SETTINGS = load_settings(max_attempts=3, retry_base_seconds=0.01, retry_max_seconds=0.02)


def scheduler(store: AuditStore) -> RetryScheduler:
    return RetryScheduler(store, interval_seconds=0.1, settings=SETTINGS)


def test_a_poisoned_entry_is_logged_and_counted_and_the_rest_promoted(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    fake_redis.zadd(fake_store.keys.delayed, {"bad": 0})
    fake_redis.hset(fake_store.keys.delayed_messages, "bad", "some:hash\nmsg")
    fake_store.defer("good", delay_seconds=0, message=msg("good", req()))
    s = scheduler(fake_store)
    assert s.run_once() == 1
    assert (s.moved, s.bad) == (1, 1)
    assert "job bad names no queue of ours" in caplog.text
    assert fake_redis.llen(REALTIME_QUEUE) == 1


def test_reap_once_retries_a_lost_attempt_on_its_own_queue_and_priority(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    request = req()
    # a foreign message: its record is made by begin, on the queue and priority it came in on
    fake_store.begin("j1", request, max_attempts=3, queue=BULK_QUEUE,
                     queue_key=queue_key(BULK_QUEUE, 6), owner="w1", lease_seconds=0.01)
    time.sleep(0.05)
    s = scheduler(fake_store)
    assert s.reap_once() == 1
    assert s.reap_once() == 0
    record = fake_store.get("j1")
    assert record is not None and record.state is State.RETRYING
    time.sleep(0.05)
    assert s.run_once() == 1
    assert fake_redis.llen(queue_key(BULK_QUEUE, 6)) == 1


def test_trim_once_empties_what_retention_has_ended(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    long_ago = time.time() - SETTINGS.retention_seconds - 100  # ended before retention
    for i in range(5):
        request = req(event=f"987fcdeb-51a2-43d7-9876-5432100000{i:02d}")
        enqueue(fake_store, f"j{i}", request)
        fake_store.begin(f"j{i}", request, max_attempts=3, queue=REALTIME_QUEUE,
                         queue_key=REALTIME_QUEUE, owner="w1", lease_seconds=30)
        fake_store.finish(f"j{i}", attempt=None, owner="w1", decision="settle",
                          outcome="event_not_found", retention_seconds=1, now=long_ago)
    assert scheduler(fake_store).trim_once() == 5
    assert fake_redis.zcard(fake_store.keys.index_all) == 0
