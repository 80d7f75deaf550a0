"""WORKER_PROCESSES on real processes: one command, N consumers, all gone with the parent."""

from __future__ import annotations

import os
import signal
import socket
import uuid

import psutil  # type: ignore[import-untyped]
import pytest

from cancelq.core.contract import CancelRequest
from cancelq.ops.health import read_heartbeats
from cancelq.store.audit import AuditStore
from producers.enqueue import submit
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def _siblings(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if "celery" in " ".join(p.cmdline())]


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _enqueue(store: AuditStore, simulator: Simulator, n: int) -> None:
    case = str(uuid.uuid4())
    events = [str(uuid.uuid4()) for _ in range(n)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in events])
    for event in events:
        submit(CancelRequest.parse(case_id=case, event_id=event), store=store)


def test_two_processes_consume_and_die_with_a_killed_parent(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    worker = start_worker(WORKER_PROCESSES="2", WORKER_CONCURRENCY="2")
    sibling = wait_for(lambda: (s := _siblings(worker.process.pid)) and s[0], timeout=30)
    host = socket.gethostname()
    nodes = wait_for(lambda: (n := {b.node for b in read_heartbeats(real_store)})
                     >= {f"w0@{host}", f"w0-s1@{host}"} and n, timeout=60)
    assert len(nodes) == 2
    _enqueue(real_store, simulator, 20)
    wait_for(lambda: real_store.counters().get("state:settled", 0) == 20, timeout=60)

    os.kill(worker.process.pid, signal.SIGKILL)  # the parent alone, not its group
    worker.process.wait(10)
    wait_for(lambda: _gone(sibling), timeout=60)


def test_sigterm_stops_parent_and_siblings(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    worker = start_worker(WORKER_PROCESSES="3", WORKER_CONCURRENCY="2")
    siblings = wait_for(lambda: len(s := _siblings(worker.process.pid)) == 2 and s, timeout=30)
    os.kill(worker.process.pid, signal.SIGTERM)  # warm shutdown of the parent only
    assert worker.process.wait(60) == 0
    wait_for(lambda: all(_gone(s) for s in siblings), timeout=30)
