"""Bulk batches end to end: real redis-server, real `celery -A worker worker`, the simulator.

A batch message carries many jobs; each must still end with its own record, one call per
job, and survive a SIGKILL of the worker mid-batch with no job lost and none called twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import redis

from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.records import JobRecord
from tests.conftest import Simulator, WorkerFactory, wait_for


def _id() -> str:
    return str(uuid.uuid4())


def _bulk(store: AuditStore, sim: Simulator, n: int, batch_size: int, run_id: str) -> list[str]:
    """`n` rows of one run, on events the simulator knows; their job ids, in row order."""
    pairs = [(_id(), _id()) for _ in range(n)]
    sim.control.add_events([{"case_id": c, "event_id": e} for c, e in pairs])
    writer = BulkWriter(store, run_id=run_id, requested_by="test", batch_size=batch_size)
    sent = writer.send([BulkRow(i + 1, c, e) for i, (c, e) in enumerate(pairs)])
    assert not any(job.duplicate for job in sent)
    return [job.job_id for job in sent]


def _final(store: AuditStore, job_ids: list[str], open_jobs: list[str]) -> bool:
    records = store.get_many(job_ids)
    open_jobs[:] = [f"{r.job_id[:8]} {r.state.value}" for r in records if not r.state.is_final]
    return len(records) == len(job_ids) and not open_jobs


def test_a_bulk_run_in_batches_settles_every_job_with_one_call_each(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory, redis_url: str
) -> None:
    simulator.control.set_faults(latency_ms=50)
    job_ids = _bulk(real_store, simulator, 250, batch_size=40, run_id="batches")
    broker = redis.Redis.from_url(redis_url)
    try:
        assert broker.llen(real_store.queues.bulk) == 7  # 6 x 40 + 10: messages, not jobs
    finally:
        broker.close()
    start_worker(CARE360_RATE_LIMIT="0")
    still_open: list[str] = []
    wait_for(lambda: _final(real_store, job_ids, still_open), timeout=60)

    records = real_store.get_many(job_ids)
    assert Counter(r.outcome for r in records) == {"cancelled": 250}
    assert all([a.number for a in r.attempts] == [1] for r in records)
    assert all(r.run_id == "batches" and r.requested_by == "test" for r in records)
    events = Counter(c["event_id"] for c in simulator.control.calls() if c["applied"])
    assert len(events) == 250 and set(events.values()) == {1}


def test_sigkill_mid_batch_loses_no_job_and_calls_none_twice_at_once(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory, redis_url: str
) -> None:
    control = simulator.control
    env = {"CELERY_VISIBILITY_TIMEOUT": 4, "CANCEL_RETRY_MAX_SECONDS": 0.3,
           "CARE360_RATE_LIMIT": 0}
    control.set_faults(latency_ms=1500)
    job_ids = _bulk(real_store, simulator, 60, batch_size=30, run_id="killed")
    first = start_worker(**env)
    wait_for(lambda: control.stats()["in_flight"] >= 20, timeout=20)
    first.kill()
    killed_at = time.monotonic()
    control.set_faults(latency_ms=0)
    start_worker(**env)

    still_open: list[str] = []
    try:  # the lease (3 s in tests) or the visibility timeout (4 s), plus start-up
        wait_for(lambda: _final(real_store, job_ids, still_open), timeout=75)
    except AssertionError:
        raise AssertionError(f"still open after 75 s: {still_open}") from None
    recovery = time.monotonic() - killed_at

    records = real_store.get_many(job_ids)
    outcomes = Counter(r.outcome for r in records)
    assert set(outcomes) <= {"cancelled", "already_cancelled"}, (outcomes, recovery)
    assert all(r.state is State.SETTLED for r in records)
    for record in records:
        _assert_one_call_at_a_time(record)
    # every event is cancelled exactly once at Care360, and no event's second call arrived
    # while its first was still being served (1.5 s): the lease kept them apart
    calls = control.calls()
    applied = Counter(c["event_id"] for c in calls if c["applied"])
    assert len(applied) == 60 and set(applied.values()) == {1}
    arrivals: dict[str | None, list[float]] = {}
    for call in calls:
        arrivals.setdefault(call["event_id"], []).append(call["time"])
    for event_id, times in arrivals.items():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(gap >= 1.4 for gap in gaps), (event_id, gaps)


def _assert_one_call_at_a_time(record: JobRecord) -> None:
    """A killed attempt is closed (WorkerLost) before the next one starts: never overlapping."""
    calls = [a for a in record.attempts if a.number > 0]
    assert calls, record.job_id
    for earlier, later in zip(calls, calls[1:], strict=False):
        assert later.number == earlier.number + 1, record.job_id
        assert earlier.error_class in ("WorkerLost", "Care360Timeout", "Care360Unreachable"), (
            record.job_id, [a.error_class for a in calls])
    assert calls[-1].verdict in ("cancelled", "already_cancelled"), record.job_id
