"""Issue 20 with real processes: a worker probes its key at start, publishes its settings,
`cancelq health` reports a rejected key, and `cancelq doctor` judges what the workers use."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from cancelq.ops.health import read_heartbeats
from cancelq.store.audit import AuditStore
from producers.cli import main
from tests.conftest import API_KEY, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

WRONG_KEY = "sk-wrong-key-NEVER-LOGGED-31"


def test_a_wrong_key_is_one_line_at_start_and_health_says_so(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str,
) -> None:
    worker = start_worker(CV_API_KEY=WRONG_KEY)
    wait_for(lambda: [b for b in read_heartbeats(real_store) if b.key_verdict == "rejected"])
    lines = [line for line in worker.log().splitlines() if "REJECTED the API key" in line]
    assert len(lines) == 1, worker.log()
    assert "dead-letter as unauthorized" in lines[0] and simulator.url in lines[0]
    assert WRONG_KEY not in worker.log()
    health = CliRunner().invoke(main, ["health", "--json"], env={"REDIS_URL": redis_url})
    assert health.exit_code == 1
    assert "rejected its API key (401) at start" in json.loads(health.stdout)["why"]


def test_doctor_in_a_bare_shell_judges_the_workers_settings(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str,
) -> None:
    """The issue's case: a shell without CARE360_BASE_URL (and without the key) used to
    fail care360 on the staging URL while the worker ran fine against another one."""
    start_worker()
    wait_for(lambda: [b for b in read_heartbeats(real_store) if b.key_verdict == "accepted"])
    result = CliRunner().invoke(main, ["doctor", "--json"],
                                env={"REDIS_URL": redis_url, "COLUMNS": "80"})
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["care360"]["status"] == "ok", checks["care360"]
    assert checks["care360"]["data"]["base_url"] == simulator.url
    assert checks["care360"]["summary"].endswith("the workers' key was accepted at their start")
    settings = checks["settings"]
    assert settings["data"]["judged"] == "workers"
    assert "CARE360_BASE_URL" in settings["data"]["shell_differs"]
    assert API_KEY not in result.output
    text = CliRunner().invoke(main, ["doctor"], env={"REDIS_URL": redis_url, "COLUMNS": "80"})
    assert re.search(r"ok +settings +judged the workers'", text.output), text.output
