"""The ops verbs under a non-default prefix (issue 16, item 9).

With `KEY_PREFIX=acme` the queues are `acme.cancellations` and `acme.cancellations.bulk`:
`health`, `doctor` and `metrics` must read those lists, not the default deployment's. One
job has waited an hour in `acme.cancellations` while the only worker (a heartbeat written by
the same function a worker uses) has received nothing for an hour: every verb must see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from cancelq.core.settings import load_settings
from cancelq.ops.health import Heartbeat, write_heartbeat
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.keys import FIELDS
from producers.cli import main
from producers.enqueue import enqueue_cancellation
from tests.conftest import ROOT, wait_for
from tests.integration.test_metrics import free_port

pytestmark = pytest.mark.integration

PREFIX = "acme"
QUEUE = "acme.cancellations"
HOUR = 3600.0


@pytest.fixture
def acme(redis_url: str) -> Iterator[AuditStore]:
    """The acme store with a job waiting an hour and a live worker idle for an hour."""
    store = audit_store(load_settings(REDIS_URL=redis_url, KEY_PREFIX=PREFIX))
    job = enqueue_cancellation(str(uuid.uuid4()), str(uuid.uuid4()), store=store).job_id
    now = store.now()
    store.redis.hset(store.keys.job(job), mapping={FIELDS["created_at"]: now - HOUR,
                                                    FIELDS["updated_at"]: now - HOUR})
    write_heartbeat(store, Heartbeat(
        node="w@box", host="box", pid=1, concurrency=2, queues=store.queues.all,
        started_at=now - 2 * HOUR, at=now, consumed_at=now - HOUR, received=1))
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == 1
    yield store
    store.redis.close()


def cli(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args),
                              env={"REDIS_URL": redis_url, "KEY_PREFIX": PREFIX,
                                   "CARE360_BASE_URL": "http://127.0.0.1:9"})


def test_health_sees_the_prefixed_queue_wait(acme: AuditStore, redis_url: str) -> None:
    result = cli(redis_url, "health", "--max-age", "60")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"unhealthy: {QUEUE}: a job has waited 36"), result.output


def test_doctor_reports_the_prefixed_queues(acme: AuditStore, redis_url: str) -> None:
    result = cli(redis_url, "doctor", "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    queues = checks["queues"]
    assert queues["status"] == "warn"
    assert queues["data"][QUEUE]["ready"] == 1
    assert queues["data"][QUEUE]["oldest_age_seconds"] >= HOUR
    assert queues["data"]["acme.cancellations.bulk"]["ready"] == 0
    assert "cancellations" not in queues["data"]
    assert any(d.startswith(f"{QUEUE}: the next job has waited ") for d in queues["details"])


def test_metrics_read_the_prefixed_lists(acme: AuditStore, redis_url: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from producers.cli import main; main()", "metrics",
         "--port", str(port), "--addr", "127.0.0.1"],
        cwd=ROOT, env={"REDIS_URL": redis_url, "KEY_PREFIX": PREFIX, "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        assert "serving http://127.0.0.1:" in process.stderr.readline()
        text = wait_for(lambda: _scrape(port), timeout=20)
    finally:
        process.terminate()
        assert process.wait(10) == 0
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("cancelq_queue_depth", (("queue", QUEUE),))] == 1
    assert samples[("cancelq_queue_oldest_age_seconds", (("queue", QUEUE),))] >= HOUR
    assert samples[("cancelq_queue_depth", (("queue", "acme.cancellations.bulk"),))] == 0
    assert ("cancelq_queue_depth", (("queue", "cancellations"),)) not in samples


def _scrape(port: int) -> str | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None
