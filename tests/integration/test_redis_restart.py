"""A worker rides through a Redis restart under load: a real `redis-server` (with an
append-only file, as production runs it) stopped for ~3 s and started again on the same port
while calls are in flight. Every job settles, none is lost, none is called twice, and the
worker process is still the one that was started."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from producers.dev.local_redis import answers, free_port
from producers.enqueue import enqueue_cancellation
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


class DurableRedis:
    """A private redis-server that keeps its data across a restart (AOF, fsync always)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: answers(self.url, timeout=0.2), timeout=20, interval=0.05)
        return process

    def restart(self, down_seconds: float) -> None:
        self.process.terminate()  # SIGTERM: a clean shutdown, the AOF is complete
        self.process.wait(20)
        time.sleep(down_seconds)
        self.process = self._spawn()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    server = DurableRedis(tmp_path)
    yield server
    server.stop()


def test_a_worker_rides_through_a_redis_restart_under_load(
    durable_redis: DurableRedis, start_worker: WorkerFactory, simulator: Simulator,
) -> None:
    # durable_redis first: set up first, torn down last, so the worker stops against a live
    # Redis (the other way round its warm shutdown waits ~10 s for a server already gone)
    control = simulator.control
    store = AuditStore(redis.Redis.from_url(durable_redis.url, decode_responses=True))
    case = str(uuid.uuid4())
    events = [str(uuid.uuid4()) for _ in range(40)]
    control.add_events([{"case_id": case, "event_id": e} for e in events])
    control.set_faults(latency_ms=300)
    # the lease outlasts the outage, as the 30 s default does in production
    worker = start_worker(REDIS_URL=durable_redis.url, CANCEL_LEASE_SECONDS=20,
                          CELERY_VISIBILITY_TIMEOUT=30)
    jobs = [enqueue_cancellation(case, e, store=store).job_id for e in events]
    wait_for(lambda: control.stats()["in_flight"] >= 10, timeout=30)

    durable_redis.restart(down_seconds=3)

    still_open: list[str] = []

    def all_final() -> bool:
        try:
            records = store.get_many(jobs)
        except redis.ConnectionError:
            return False
        still_open[:] = [f"{r.job_id[:8]} {r.state.value} {[a.error_class for a in r.attempts]}"
                         for r in records if r.state not in (State.SETTLED, State.DEAD)]
        return len(records) == len(jobs) and not still_open

    try:
        wait_for(all_final, timeout=150, interval=0.5)
    except AssertionError:
        raise AssertionError(f"still open: {still_open}\n{worker.log()[-4000:]}") from None
    assert worker.process.poll() is None, worker.log()[-3000:]
    assert "Unrecoverable error" not in worker.log()
    records = store.get_many(jobs)
    assert Counter(r.outcome for r in records) == Counter({"cancelled": len(jobs)}), [
        (r.job_id[:8], r.outcome, [a.error_class for a in r.attempts]) for r in records
        if r.outcome != "cancelled"]
    calls = Counter(c["event_id"] for c in control.calls())
    assert calls == Counter(events), "an event was called more than once"
    store.redis.close()
