"""`cancelq health` against real workers: consumption proven, a stall found, recovery seen.

Two ways a worker stops consuming, on real processes: SIGSTOP (the whole process frozen,
no heartbeat) and a cancelled consumer (`celery control cancel_consumer`: the worker lives
and beats, but takes nothing from the queue, like the reconnect hangs after a Redis restart).
Every wait polls for the state it asserts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner, Result

from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from producers.cli import main
from producers.enqueue import submit
from tests.conftest import ROOT, Simulator, WorkerFactory, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

MAX_AGE = "4"


def health(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["health", "--max-age", MAX_AGE, *args],
                              env={"REDIS_URL": redis_url})


def enqueue(store: AuditStore, simulator: Simulator, n: int) -> list[str]:
    case = str(uuid.uuid4())
    events = [str(uuid.uuid4()) for _ in range(n)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in events])
    return [submit(CancelRequest.parse(case_id=case, event_id=e), store=store).job_id
            for e in events]


def settled(store: AuditStore, n: int) -> bool:
    return store.counters().get("state:settled", 0) == n


def node(index: int = 0) -> str:
    return f"w{index}@{socket.gethostname()}"


def celery_control(worker: WorkerProcess, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "celery", "-A", "worker", "control", *args,
                    "-d", node(), "--timeout", "5"],
                   cwd=ROOT, env=worker.env, check=True, capture_output=True, timeout=60)


def test_a_stopped_worker_is_unhealthy_until_it_resumes(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str
) -> None:
    worker = start_worker(WORKER_CONCURRENCY=2)
    enqueue(real_store, simulator, 3)
    wait_for(lambda: settled(real_store, 3), timeout=30)
    wait_for(lambda: health(redis_url).output.startswith(  # the next heartbeat tells
        f"healthy: {node()} alive, last received "), timeout=30)
    wait_for(lambda: health(redis_url, "--node", node()).exit_code == 0, timeout=10)
    wait_for(lambda: health(redis_url, "--this-host").exit_code == 0, timeout=10)

    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        enqueue(real_store, simulator, 5)
        bad = wait_for(lambda: (r := health(redis_url)).exit_code == 1 and r, timeout=40)
        assert bad.output.count("\n") == 1
        assert bad.output.startswith(f"unhealthy: {node()}: no heartbeat for ")
        assert health(redis_url, "--node", node()).exit_code == 1
        as_json = health(redis_url, "--json")
        assert as_json.exit_code == 1
        assert json.loads(as_json.stdout)["healthy"] is False
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    wait_for(lambda: health(redis_url).exit_code == 0, timeout=40)
    wait_for(lambda: settled(real_store, 8), timeout=40)


def test_a_live_worker_that_consumes_nothing_is_unhealthy(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str
) -> None:
    worker = start_worker(WORKER_CONCURRENCY=2)
    wait_for(lambda: health(redis_url).exit_code == 0, timeout=30)
    celery_control(worker, "cancel_consumer", REALTIME_QUEUE)
    enqueue(real_store, simulator, 3)
    bad = wait_for(lambda: (r := health(redis_url)).exit_code == 1 and r, timeout=40)
    assert bad.output.startswith(f"unhealthy: {REALTIME_QUEUE}: a job has waited ")
    assert f"{node()} received nothing for " in bad.output
    assert health(redis_url, "--this-host").exit_code == 1  # the container's view, too

    celery_control(worker, "add_consumer", REALTIME_QUEUE)
    wait_for(lambda: settled(real_store, 3), timeout=40)
    wait_for(lambda: health(redis_url).exit_code == 0, timeout=20)


def test_the_compose_healthcheck_uses_the_same_check(
    start_worker: WorkerFactory, redis_url: str
) -> None:
    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "worker.healthcheck", "worker"],
                              cwd=ROOT, env=worker.env, capture_output=True, text=True,
                              timeout=60)

    worker = start_worker(WORKER_CONCURRENCY=2)
    wait_for(lambda: probe().returncode == 0, timeout=30)
    worker.stop()  # a warm shutdown takes its heartbeat away
    gone = probe()
    assert gone.returncode == 1
    assert gone.stderr.strip() == (f"unhealthy: worker: no heartbeat from workers on "
                                   f"{socket.gethostname()} (is a worker running?)")
