"""Metrics scraped over HTTP from a real worker and from `cancelq metrics` (a real process).

Twelve jobs through a worker rate-limited to 2 calls/s (so some are deferred): eight events
exist (200), four do not (400). The worker's histogram must count exactly the calls the
simulator saw, by status; the cluster exporter must agree with the store's counters and
with the worker's own counts once the worker has handed them over.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from producers.enqueue import submit
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def exporter(redis_url: str) -> Iterator[int]:
    """`cancelq metrics` as its own process; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from producers.cli import main; main()", "metrics",
         "--port", str(port), "--addr", "127.0.0.1"],
        cwd=ROOT, env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().strip() == (
            f"cancelq metrics: serving http://127.0.0.1:{port}/metrics")
        yield port
    finally:
        process.terminate()
        assert process.wait(10) == 0  # SIGTERM: a clean stop


def test_worker_and_cluster_metrics_agree_with_what_happened(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, exporter: int
) -> None:
    worker_port = free_port()
    worker = start_worker(WORKER_CONCURRENCY=4, CARE360_RATE_LIMIT=2,
                          WORKER_METRICS_PORT=worker_port)
    case = str(uuid.uuid4())
    known = [str(uuid.uuid4()) for _ in range(8)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in known])
    for event in [*known, *(str(uuid.uuid4()) for _ in range(4))]:
        submit(CancelRequest.parse(case_id=case, event_id=event), store=real_store)
    wait_for(lambda: real_store.counters().get("state:settled") == 12, timeout=60)
    seen = simulator.control.stats()["by_status"]
    assert seen == {"200": 8, "400": 4}

    mine = scrape(worker_port)
    for status, count in seen.items():
        assert mine[("cancelq_call_duration_seconds_count", (("status", status),))] == count
        assert mine[("cancelq_worker_calls_total", (("status", status),))] == count
        assert mine[("cancelq_call_duration_seconds_sum", (("status", status),))] > 0
        assert mine[("cancelq_call_duration_seconds_bucket",
                     (("le", "+Inf"), ("status", status)))] == count
    deferred = mine[("cancelq_worker_gate_verdicts_total",
                     (("gate", "rate_limit"), ("verdict", "defer")))]
    assert deferred > 0  # 12 jobs at 2 calls/s on 4 threads
    assert mine[("cancelq_worker_messages_received_total", ())] == 12 + deferred
    assert mine[("process_resident_memory_bytes", ())] > 0

    def cluster_caught_up() -> Samples | None:
        got = scrape(exporter)
        ready = got.get(("cancelq_rate_limit_deferrals_total", ())) == deferred
        return got if ready and got.get(("cancelq_calls_total", (("status", "200"),))) == 8 \
            else None

    cluster = wait_for(cluster_caught_up, timeout=20)  # handed over with the next heartbeat
    assert cluster[("cancelq_redis_up", ())] == 1
    assert cluster[("cancelq_calls_total", (("status", "400"),))] == 4
    assert cluster[("cancelq_jobs", (("state", "settled"),))] == 12
    assert cluster[("cancelq_job_outcomes", (("outcome", "cancelled"),))] == 8
    assert cluster[("cancelq_job_outcomes", (("outcome", "event_not_found"),))] == 4
    assert cluster[("cancelq_attempts_total", ())] == 12
    assert cluster[("cancelq_jobs_created_total", ())] == 12
    assert cluster[("cancelq_calls_last_minute", (("status", "200"),))] == 8
    assert cluster[("cancelq_queue_depth", (("queue", "cancellations"),))] == 0
    assert cluster[("cancelq_queue_oldest_age_seconds", (("queue", "cancellations"),))] == 0
    assert cluster[("cancelq_dead_letters", ())] == 0
    assert cluster[("cancelq_workers_online", ())] == 1
    assert cluster[("cancelq_breaker_state", (("state", "closed"),))] == 1

    worker.stop()
    after = scrape(exporter)
    assert after[("cancelq_workers_online", ())] == 0  # a warm stop says goodbye
    assert after[("cancelq_calls_total", (("status", "200"),))] == 8  # nothing counted twice
