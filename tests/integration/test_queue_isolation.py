"""Issue 11: two deployments on one Redis database, told apart by KEY_PREFIX, each consume
only their own jobs (queue names derive from the prefix); the default prefix keeps today's
queue names."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis

from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, Queues
from producers.enqueue import enqueue_cancellation
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_default_and_prefixed_names() -> None:
    assert Queues.from_settings(load_settings()) == Queues(REALTIME_QUEUE, BULK_QUEUE)
    assert Queues.from_settings(load_settings(KEY_PREFIX="acme")).all == (
        "acme.cancellations", "acme.cancellations.bulk")
    named = load_settings(KEY_PREFIX="acme", QUEUE_PREFIX="blue")
    assert Queues.from_settings(named).realtime == "blue.cancellations"


@pytest.mark.parametrize(("prefix", "names"), [
    ("c360", ["cancellations", "cancellations.bulk"]),
    ("acme", ["acme.cancellations", "acme.cancellations.bulk"]),
])
def test_the_worker_listens_on_its_prefixs_queues(prefix: str, names: list[str]) -> None:
    code = "import celeryconfig as c; print([q.name for q in c.task_queues], c.task_default_queue)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin", "KEY_PREFIX": prefix,
                                         "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.stdout.strip() == f"{names} {names[0]}", done.stderr


def _store(redis_url: str, prefix: str) -> AuditStore:
    return audit_store(load_settings(REDIS_URL=redis_url, KEY_PREFIX=prefix))


def test_two_prefixes_on_one_database_each_consume_only_their_own(
    redis_url: str, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    alpha, beta = _store(redis_url, "alpha"), _store(redis_url, "beta")
    jobs: dict[str, list[str]] = {"alpha": [], "beta": []}
    for name, store in (("alpha", alpha), ("beta", beta)):
        for _ in range(3):
            case, event = str(uuid.uuid4()), str(uuid.uuid4())
            simulator.control.add_event(case, event)
            jobs[name].append(enqueue_cancellation(case, event, store=store).job_id)
    raw = redis.Redis.from_url(redis_url)
    assert raw.llen("alpha.cancellations") == 3 and raw.llen("beta.cancellations") == 3

    start_worker(KEY_PREFIX="alpha")

    def settled(store: AuditStore, ids: list[str]) -> bool:
        return all(r.state.value == "settled" for r in store.get_many(ids)) and len(
            store.get_many(ids)) == len(ids)

    wait_for(lambda: settled(alpha, jobs["alpha"]), timeout=60)
    # alpha's worker has had every chance to take beta's jobs: they are still queued
    assert raw.llen("beta.cancellations") == 3
    assert all(r.state.value == "queued" for r in beta.get_many(jobs["beta"]))

    start_worker(KEY_PREFIX="beta")
    wait_for(lambda: settled(beta, jobs["beta"]), timeout=60)
    raw.close()
