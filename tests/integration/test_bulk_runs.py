"""Real processes: `bulk/test_intake`; real Redis, workers, simulator."""


from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cancelq.bulk.runs import run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from producers.enqueue import enqueue_cancellation
from tests.bulk.test_intake import MEMORY_SCRIPT, _id, _write_rows
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_intake_memory_does_not_grow_with_the_file(redis_url: str, tmp_path: Path) -> None:
    peaks = {}
    for n in (10_000, 100_000):
        path = tmp_path / f"{n}.csv"
        _write_rows(path, n)
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, redis_url, str(path), f"mem-{n}"],
            capture_output=True, text=True, cwd=ROOT, timeout=150, check=True,
        )
        rows, accepted, duplicates, invalid, peak_kb = map(int, done.stdout.split())
        assert (rows, accepted, duplicates, invalid) == (n, n - n // 10, 0, n // 10)
        peaks[n] = peak_kb
    # ten times the rows, the same memory (a few MB of allocator noise allowed);
    # bench/bulk_memory.py checks 1,000,000 rows
    assert peaks[100_000] - peaks[10_000] < 8 * 1024, peaks



def test_real_time_jobs_overtake_a_bulk_backlog(
    real_store: AuditStore, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    simulator.control.set_faults(latency_ms=100)
    bulk_pairs = [(_id(), _id()) for _ in range(1000)]
    live_pairs = [(_id(), _id()) for _ in range(5)]
    simulator.control.add_events(
        [{"case_id": c, "event_id": e} for c, e in bulk_pairs + live_pairs]
    )
    rows = [BulkRow(i, c, e) for i, (c, e) in enumerate(bulk_pairs)]
    BulkWriter(real_store, run_id="backlog", requested_by="test", batch_size=10).send(rows)
    # 4 calls in flight x 100 ms: the backlog needs ~25 s
    start_worker(WORKER_CONCURRENCY="4", CARE360_RATE_LIMIT="0", CARE360_MAX_IN_FLIGHT="4")
    wait_for(lambda: run_progress(real_store, "backlog").done >= 12, timeout=30)

    live = [enqueue_cancellation(c, e, store=real_store).job_id for c, e in live_pairs]

    def settled() -> bool:
        return all(
            (r := real_store.get(j, with_attempts=False)) is not None and r.state.is_final
            for j in live
        )

    wait_for(settled, timeout=15)
    left = run_progress(real_store, "backlog").pending
    # the real-time jobs waited for a batch to end (a free thread), then went first for a
    # call slot: they did not wait behind the backlog
    assert left > 500, f"real-time jobs settled only when {left} bulk jobs were left"
    for job_id in live:
        record = real_store.get(job_id, with_attempts=False)
        assert record is not None and record.outcome == "cancelled"
        assert record.settled_at is not None
    assert REALTIME_QUEUE != BULK_QUEUE

