"""A warm shutdown (SIGTERM) keeps the leases of the calls still running until they end: no
other worker reaps them, no job is called twice, and the first outcome is the one recorded."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS
from producers.enqueue import enqueue_cancellation
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_a_call_running_through_a_warm_shutdown_keeps_its_lease(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore,
) -> None:
    control = simulator.control
    case, event = str(uuid.uuid4()), str(uuid.uuid4())
    control.add_events([{"case_id": case, "event_id": event}])
    # renewals every 2 s (a third of the lease); the call runs on past two of them
    control.set_faults(latency_ms=5400)
    env = {"CARE360_TIMEOUT_SECONDS": 5.8, "CANCEL_LEASE_SECONDS": 6,
           "CELERY_VISIBILITY_TIMEOUT": 30}
    workers = [start_worker(**env), start_worker(**env)]  # the other one reaps expired leases
    job = enqueue_cancellation(case, event, store=real_store).job_id
    key = real_store.keys.job(job)
    owner = wait_for(lambda: control.stats()["in_flight"] == 1
                     and real_store.redis.hget(key, FIELDS["lease_owner"]), timeout=30,
                     interval=0.02)
    at_term = float(real_store.redis.hget(key, FIELDS["lease_until"]) or 0)
    pid = int(str(owner).split(":")[1])
    (first,) = [w for w in workers if w.process.pid == pid]
    os.killpg(first.process.pid, signal.SIGTERM)  # warm: the running call may finish
    renewed: list[float] = []

    def settled() -> bool:
        until = real_store.redis.hget(key, FIELDS["lease_until"])
        if until:
            renewed.append(float(until))
        record = real_store.get(job, with_attempts=False)
        return record is not None and record.state is State.SETTLED

    wait_for(settled, timeout=60, interval=0.05)
    # Steps stop before the pool waits for its tasks: stopping renewal with the scheduler's
    # step left the call's last renewals out (one at most slipped through while Celery closed
    # the consumer).
    assert len({u for u in renewed if u > at_term}) >= 2, (
        at_term, sorted(set(renewed)), first.log()[-3000:])
    record = real_store.get(job)
    assert record is not None and record.outcome == "cancelled", record
    assert [(a.number, a.http_status, a.error_class) for a in record.attempts] == [
        (1, 200, None)], record.to_json()
    assert len(control.calls()) == 1
    first.process.wait(30)
    assert first.process.returncode == 0, first.log()[-3000:]
