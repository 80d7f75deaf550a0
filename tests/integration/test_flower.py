"""Flower, for real: `celery -A worker flower` against the test Redis and a real worker.

Flower lists the jobs with their states and outcomes behind basic auth, answers 401 without
it, shows ids (never the reason, never the API key) for every message including retries,
and refuses to start at all without credentials.
"""

from __future__ import annotations

import base64
import http.client
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis

from cancelq.core.contract import TASK_NAME, CancelRequest
from cancelq.store.audit import AuditStore
from producers.dev.local_redis import free_port
from producers.enqueue import submit
from tests.conftest import (
    API_KEY,
    ROOT,
    Simulator,
    WorkerFactory,
    stop_process,
    wait_for,
    wait_for_http,
    worker_env,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "flower-test-pw"
PRIVATE_REASON = "PRIVATE-REASON-never-in-flower"


def flower_env(redis_url: str, simulator_url: str, **extra: str) -> dict[str, str]:
    env = worker_env(redis_url, simulator_url)
    env.pop("CV_API_KEY")  # Flower never needs the key
    env = {k: v for k, v in env.items() if not k.startswith("FLOWER_")}
    env.update(extra)
    return env


@pytest.fixture
def flower(redis_url: str, simulator: Simulator, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "flower.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "flower",
             f"--port={port}", "--address=127.0.0.1"],
            cwd=ROOT,
            env=flower_env(redis_url, simulator.url, FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for_http(process, f"{url}/healthcheck", log)
        yield url
    finally:
        stop_process(process)


def test_flower_lists_real_jobs_behind_auth_and_never_the_key(
    flower: str, start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    control = simulator.control
    start_worker()
    http = httpx.Client(base_url=flower, auth=(USER, PASSWORD), timeout=10)

    def events_flowing() -> bool:  # Flower's event receiver is live: it saw a heartbeat
        metrics = http.get("/metrics").text
        return any(line.startswith("flower_worker_online{") and line.endswith(" 1.0")
                   for line in metrics.splitlines())

    wait_for(events_flowing, timeout=30, interval=0.3)

    case = str(uuid.uuid4())
    ok, flaky, missing = (str(uuid.uuid4()) for _ in range(3))
    control.add_event(case, ok)
    control.add_event(case, flaky)
    control.script(flaky, [500])
    jobs: dict[str, str] = {}
    for name, event in (("ok", ok), ("flaky", flaky), ("missing", missing)):
        request = CancelRequest.parse(case_id=case, event_id=event, run_id="flower-run",
                                      reason=PRIVATE_REASON, requested_by="ops@test")
        jobs[name] = submit(request, store=real_store).job_id

    def tasks_of(job_id: str, tasks: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for t in tasks.values() if f"'job_id': '{job_id}'" in (t.get("kwargs") or "")]

    def all_final() -> dict[str, Any] | None:
        tasks: dict[str, Any] = http.get("/api/tasks").json()
        finished = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        return tasks if len(finished) == 4 else None  # ok, missing, flaky twice (a retry)

    tasks = wait_for(all_final, timeout=30, interval=0.3)

    [ok_task] = tasks_of(jobs["ok"], tasks)
    assert ok_task["uuid"] == jobs["ok"]  # producers use the job id as the task id
    assert ok_task["name"] == TASK_NAME and ok_task["state"] == "SUCCESS"
    assert "settled: cancelled" in ok_task["result"]
    for field in (f"'case_id': '{case}'", f"'event_id': '{ok}'", "'run_id': 'flower-run'"):
        assert field in ok_task["kwargs"]
    [missing_task] = tasks_of(jobs["missing"], tasks)
    assert "settled: event_not_found" in missing_task["result"]
    flaky_tasks = sorted(tasks_of(jobs["flaky"], tasks), key=lambda t: t["received"])
    assert [t["result"].strip("'\"").split(":")[0] for t in flaky_tasks] == [
        "retrying", "settled"]
    retry = flaky_tasks[1]
    assert retry["uuid"] != jobs["flaky"]  # the retry is a new message ...
    assert f"'event_id': '{flaky}'" in retry["kwargs"]  # ... built with the same kwargsrepr
    assert all(t["args"] == "()" for t in tasks.values())

    # without credentials, or with wrong ones: 401
    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/tasks", auth=(USER, "wrong"), timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/workers", timeout=5).status_code == 401

    def workers_listed() -> str | None:
        # Flower's first refresh after start answers {} while its inspect broadcast is still
        # out; a later one lists the worker. Poll for the state asserted below.
        text = http.get("/api/workers", params={"refresh": "1"}).text
        return text if "worker" in text else None

    workers_answer = wait_for(workers_listed, timeout=60, interval=0.5)

    # the key (and the reason) appear nowhere Flower answers
    answers = {
        "/api/tasks": http.get("/api/tasks").text,
        "/api/task/info": http.get(f"/api/task/info/{jobs['ok']}").text,
        "/api/task/info retry": http.get(f"/api/task/info/{retry['uuid']}").text,
        "/api/workers": workers_answer,
        "/api/task/types": http.get("/api/task/types").text,
        "/metrics": http.get("/metrics").text,
        "/tasks page": http.get("/tasks").text,
        "/task page": http.get(f"/task/{jobs['ok']}").text,
    }
    assert jobs["ok"] in answers["/api/task/info"]
    assert "worker" in answers["/api/workers"]
    assert "flower_events_total" in answers["/metrics"]
    for where, text in answers.items():
        assert API_KEY not in text, where
        assert PRIVATE_REASON not in text, where
        assert "cv-api-key" not in text.lower(), where


def _run_flower(redis_url: str, simulator_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={free_port()}",
         "--address=127.0.0.1"],
        cwd=ROOT, env=flower_env(redis_url, simulator_url, **env),
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize("env", [{}, {"FLOWER_BASIC_AUTH": ""}, {"FLOWER_BASIC_AUTH": "ops"}])
def test_flower_refuses_to_start_without_credentials(
    redis_url: str, simulator: Simulator, env: dict[str, str]
) -> None:
    started = time.monotonic()
    done = _run_flower(redis_url, simulator.url, **env)
    assert done.returncode == 2, done.stderr
    assert "refusing to start" in done.stderr and "FLOWER_BASIC_AUTH" in done.stderr
    assert time.monotonic() - started < 20



#: A Redis password as people paste them: `@ ; / #` and all (percent-encoded in the URL).
BROKER_USER, BROKER_PASSWORD = "flowertest", "Br0ker@Pw;x/y#z"


@pytest.fixture
def password_url(redis_url: str) -> Iterator[str]:
    """The test Redis through an ACL user with a password (the default user is untouched)."""
    client = redis.Redis.from_url(redis_url)
    client.acl_setuser(BROKER_USER, enabled=True, passwords=[f"+{BROKER_PASSWORD}"],
                       keys=["*"], channels=["*"], commands=["+@all"])
    host = redis_url.removeprefix("redis://")
    yield f"redis://{BROKER_USER}:{quote(BROKER_PASSWORD, safe='')}@{host}"
    client.acl_deluser(BROKER_USER)
    client.close()


def refused_post(port: int, raw_path: str) -> int:
    """A cross-site POST (refused by Flower, logged by tornado) sent with `raw_path` as is."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        connection.request("POST", raw_path, headers={
            "Sec-Fetch-Site": "cross-site", "Authorization": f"Basic {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_flower_log_lines_mask_the_broker_password(
    password_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    """Issue 16, item 15: Flower's and tornado's own lines go through the project's masking.

    Flower runs on a broker URL with a password. Its `Broker:` and `Connected to` lines
    come masked by kombu as `:**@`; the project's masking makes every such line `:***@`, the
    proof that Flower's handlers carry it. A line tornado writes with the request in it
    (a refused cross-site POST whose query holds the broker URL) must not show the password.
    """
    port, log = free_port(), tmp_path / "flower.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}"],
            cwd=ROOT, env=flower_env(password_url, simulator.url, REDIS_URL=password_url,
                                     FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}"),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_http(process, f"http://127.0.0.1:{port}/healthcheck", log)
        wait_for(lambda: "Connected to " in log.read_text(), timeout=30)
        assert refused_post(port, f"/api/task/revoke/x?u={password_url}") == 403
        wait_for(lambda: "403 POST" in log.read_text(), timeout=20)
    finally:
        stop_process(process)
    text = log.read_text()
    for secret in (BROKER_PASSWORD, quote(BROKER_PASSWORD, safe=""), "Br0ker"):
        assert secret not in text, text
    masked = f"://{BROKER_USER}:***@127.0.0.1:"  # the scheme is the transport's name
    assert f"u=redis{masked}" in text
    assert re.search(f"Broker: \\S+{re.escape(masked)}", text), text
    assert re.search(f"Connected to \\S+{re.escape(masked)}", text), text
