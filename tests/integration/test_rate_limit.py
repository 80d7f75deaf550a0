"""Real processes: `pipeline/test_rate_limit`; real Redis, workers, simulator."""


from __future__ import annotations

import time
import uuid

import pytest

from cancelq.bulk.runs import run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from producers.enqueue import enqueue_cancellation
from tests.conftest import Simulator, WorkerFactory, wait_for
from tests.pipeline.test_rate_limit import _max_in_any_window

pytestmark = pytest.mark.integration


def test_two_workers_share_one_limit(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    limit, jobs = 10, 60
    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(jobs)]
    simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in pairs])
    job_ids = []
    for i, (case, event) in enumerate(pairs):  # both queues, both workers
        queue = BULK_QUEUE if i % 2 else REALTIME_QUEUE
        job_ids.append(enqueue_cancellation(case, event, store=real_store, queue=queue).job_id)
    for _ in range(2):
        start_worker(CARE360_RATE_LIMIT=str(limit), WORKER_CONCURRENCY="8")
    wait_for(lambda: real_store.counters().get("state:settled", 0) == jobs, timeout=40)

    _assert_paced(real_store, simulator, job_ids, limit)


def test_a_bulk_run_in_batches_keeps_the_limit_at_the_api(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    """A batch asks the limit per job and calls each chunk right after its slots: the calls
    of a 30-job batch are paced like single jobs', never fired together at the end."""
    limit, jobs = 10, 60
    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(jobs)]
    simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in pairs])
    rows = [BulkRow(i, c, e) for i, (c, e) in enumerate(pairs)]
    sent = BulkWriter(real_store, run_id="batched", requested_by="test", batch_size=30).send(rows)
    for _ in range(2):
        start_worker(CARE360_RATE_LIMIT=str(limit), WORKER_CONCURRENCY="8")
    wait_for(lambda: run_progress(real_store, "batched").done == jobs, timeout=40)
    _assert_paced(real_store, simulator, [job.job_id for job in sent], limit)


def _assert_paced(store: AuditStore, simulator: Simulator, job_ids: list[str], limit: int) -> None:
    jobs = len(job_ids)
    calls = simulator.control.calls()
    assert len(calls) == jobs  # every job called once: a deferral is not a call
    made = [a.started_at for r in store.get_many(job_ids) for a in r.attempts if a.number]
    assert len(made) == jobs
    # When the calls were made (each worker's record of its call, taken just after its
    # slot): never more than the limit in any 1-second window, plus a small burst: on a busy
    # 2-core machine up to ~100 ms pass between the limiter's stamp and that record, which
    # moved up to 2 calls across a window's edge in our runs.
    assert _max_in_any_window(made) <= limit + 3, sorted(made)
    # Where they arrived: the same, plus at most one burst (one window's worth). A worker
    # thread's first call opens its connection first (~0.3 s on a busy machine), which can
    # push part of one window's calls into the next one.
    arrived = [call["time"] for call in calls]
    assert _max_in_any_window(arrived) <= 2 * limit, sorted(arrived)
    span = max(arrived) - min(arrived)
    assert span >= (jobs - 2 * limit) / limit, span  # it really was paced: ~5 s, not ~0.1 s


def test_under_the_limit_real_time_still_goes_first(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    backlog = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(100)]
    live = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(5)]
    simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in backlog + live])
    rows = [BulkRow(i, c, e) for i, (c, e) in enumerate(backlog)]
    BulkWriter(real_store, run_id="paced", requested_by="test").send(rows)
    start_worker(CARE360_RATE_LIMIT="10", WORKER_CONCURRENCY="8")
    wait_for(lambda: run_progress(real_store, "paced").done >= 15, timeout=30)

    job_ids = []
    for case, event in live:  # while bulk saturates its share of the limit
        job_ids.append(enqueue_cancellation(case, event, store=real_store).job_id)
        time.sleep(0.3)
    wait_for(lambda: all(r.state.is_final for r in real_store.get_many(job_ids)), timeout=10)
    progress = run_progress(real_store, "paced")
    for record in real_store.get_many(job_ids, with_attempts=True):
        assert record.outcome == "cancelled" and record.settled_at is not None
        assert [a.number for a in record.attempts] == [1]
    # the reserve was there: the real-time jobs did not wait for the backlog's turns; they
    # settled while most of the backlog (paced at 9/s) was still waiting
    assert progress.pending > 40
    # bulk jobs wait in the delayed set for their turn (one deferral each, not a spin)
    assert real_store.delayed_count() > 20

