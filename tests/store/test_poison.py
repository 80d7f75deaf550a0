"""Poison ids on real Redis: an entry of the leases or expiry set that names no job record
(`<victim>:attempts` is the victim's attempt list) never stops the reaper or the trim for
the jobs behind it, and never touches the victim."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from cancelq.core.lifecycle import State
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS
from cancelq.store.queues import REALTIME_QUEUE
from tests.store.test_audit import enqueue, msg, req
from tests.store.test_faults import call
from worker.scheduler import RetryScheduler

pytestmark = pytest.mark.integration

SETTINGS = load_settings(max_attempts=3, retry_base_seconds=0.01, retry_max_seconds=0.02)


def _event() -> str:
    return str(uuid.uuid4())


def begin(store: AuditStore, job_id: str, event: str, *, lease: float = 30.0) -> None:
    begun = store.begin(job_id, req(event=event), max_attempts=3, queue=REALTIME_QUEUE,
                        queue_key=REALTIME_QUEUE, owner="w1", lease_seconds=lease)
    assert begun.verdict == "run"


def settled_victim(store: AuditStore, *, retention: float = 0, now: float | None = None
                   ) -> str:
    """A job settled `cancelled`; `{victim}:attempts` then names a key of another type
    (v1's attempts list; in v2 the test makes one: `poison_of`)."""
    job_id, event = str(uuid.uuid4()), _event()
    enqueue(store, job_id, req(event=event))
    begin(store, job_id, event)
    assert store.finish(job_id, attempt=call(1, 200, "cancelled"), owner="w1",
                        decision="settle", outcome="cancelled", retention_seconds=retention,
                        now=now)
    got = store.get(job_id)
    assert got is not None and len(got.attempts) == 1
    return job_id


def poison_of(store: AuditStore, victim: str) -> str:
    """An id whose record key holds a list, not a record: every script call on it would
    fail WRONGTYPE (v1's `{victim}:attempts` named the victim's attempts list so)."""
    poison = f"{victim}:attempts"
    store.redis.rpush(store.keys.job(poison), "an attempt")
    return poison


def test_a_poison_lease_entry_does_not_stop_the_reaper(
    real_store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    r: redis.Redis = real_store.redis
    victim = settled_victim(real_store)
    poison = poison_of(real_store, victim)
    r.zadd(real_store.keys.leases, {poison: 0})  # first in line, expired long ago
    lost, event = str(uuid.uuid4()), _event()
    enqueue(real_store, lost, req(event=event))
    begin(real_store, lost, event, lease=0.05)
    time.sleep(0.1)

    assert RetryScheduler(real_store, interval_seconds=0.1, settings=SETTINGS).reap_once() == 1
    record = real_store.get(lost)
    assert record is not None and record.state is State.RETRYING
    assert r.zscore(real_store.keys.leases, poison) is None
    assert "names no job record; dropped" in caplog.text
    victim_record = real_store.get(victim)
    assert victim_record is not None and victim_record.outcome == "cancelled"
    assert r.type(real_store.keys.job(poison)) in ("list", b"list")


def test_reap_lua_drops_a_poison_id_it_is_given(real_store: AuditStore) -> None:
    victim = settled_victim(real_store)
    poison = poison_of(real_store, victim)
    real_store.redis.zadd(real_store.keys.leases, {poison: 0})
    assert real_store.reap(poison, msg(poison, req()), max_attempts=3, delay_seconds=0) is None
    assert real_store.redis.zscore(real_store.keys.leases, poison) is None
    assert real_store.redis.llen(real_store.keys.job(poison)) == 1  # untouched: no note


def test_a_poison_outcome_entry_does_not_stop_the_trim(
    real_store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    r: redis.Redis = real_store.redis
    victim = settled_victim(real_store)  # ended now: within retention
    poison = poison_of(real_store, victim)
    outcomes = real_store.keys.index_outcome("cancelled")
    r.zadd(outcomes, {poison: 0})
    expired = settled_victim(real_store, now=time.time() - 100)

    assert real_store.trim(retention_seconds=50) == 1
    assert real_store.get(expired) is None  # the good entry was trimmed
    assert r.zrange(outcomes, 0, -1) == [victim]
    assert "could not be trimmed" in caplog.text
    victim_record = real_store.get(victim)
    assert victim_record is not None and victim_record.outcome == "cancelled"


def test_a_lease_entry_whose_record_breaks_the_reap_script_is_dropped(
    real_store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A record Redis holds but the script cannot read (a hand-edited `attempts`)."""
    broken, event = str(uuid.uuid4()), _event()
    enqueue(real_store, broken, req(event=event))
    begin(real_store, broken, event, lease=0.01)
    real_store.redis.hset(real_store.keys.job(broken), FIELDS["attempts"], "many")
    time.sleep(0.05)
    assert real_store.reap(broken, msg(broken, req()), max_attempts=3, delay_seconds=0) is None
    assert real_store.redis.zscore(real_store.keys.leases, broken) is None
    assert "could not be reaped" in caplog.text
