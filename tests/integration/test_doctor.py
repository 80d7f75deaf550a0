"""`cancelq doctor` against a live Redis with a real worker and the simulator, and a dead one."""

from __future__ import annotations

import json
import re
import socket
import uuid

import pytest
from click.testing import CliRunner, Result

from cancelq.core.contract import CancelRequest
from cancelq.ops.doctor import NIL_UUID
from cancelq.ops.health import read_heartbeats
from cancelq.store.audit import AuditStore
from producers.cli import main
from producers.enqueue import submit
from tests.conftest import API_KEY, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def doctor(redis_url: str, simulator: Simulator, *args: str, key: str = API_KEY) -> Result:
    env = {"REDIS_URL": redis_url, "CV_API_KEY": key, "CARE360_BASE_URL": simulator.url,
           "COLUMNS": "80"}
    return CliRunner().invoke(main, ["doctor", *args], env=env)


def statuses(result: Result) -> dict[str, str]:
    return {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_all_checks_pass_with_a_live_redis_a_worker_and_the_api(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str
) -> None:
    start_worker(WORKER_CONCURRENCY=3)
    case, event = str(uuid.uuid4()), str(uuid.uuid4())
    simulator.control.add_event(case, event)
    submit(CancelRequest.parse(case_id=case, event_id=event), store=real_store)
    wait_for(lambda: real_store.counters().get("state:settled") == 1, timeout=30)
    # the worker's own key probe at start is published with its heartbeat
    wait_for(lambda: [b for b in read_heartbeats(real_store) if b.key_verdict == "accepted"])
    simulator.control.reset()  # forget the job's call: count only the doctor's

    result = doctor(redis_url, simulator, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["redis"]["status"] in ("ok", "warn")  # the test server runs without AOF
    assert checks["redis"]["data"]["maxmemory_policy"] == "noeviction"
    assert checks["redis"]["data"]["version"]
    assert checks["queues"]["status"] == "ok"
    assert checks["queues"]["data"]["cancellations"] == {"ready": 0, "oldest_age_seconds": None}
    assert checks["workers"]["status"] == "ok"
    (worker,) = checks["workers"]["data"]["workers"]
    assert worker["node"] == f"w0@{socket.gethostname()}" and worker["concurrency"] == 3
    assert worker["online"] and worker["idle_seconds"] < 60
    assert checks["care360"] == {
        "name": "care360", "status": "ok", "details": [],
        "summary": f"{simulator.url} reachable; key accepted (probe refused with HTTP 404, "
                   "nothing cancelled)",
        "data": {"base_url": simulator.url, "without_key": 401, "with_key": 404,
                 "workers_key": "accepted"},
    }
    assert checks["settings"]["summary"].startswith(
        f"judged the workers' (w0@{socket.gethostname()})")
    assert report["ok"] is True
    assert API_KEY not in result.output
    calls = simulator.control.calls(probes=True)
    assert [(c["case_id"], c["status"], c["applied"]) for c in calls] == [
        (NIL_UUID, 401, False), (NIL_UUID, 404, False)]

    text = doctor(redis_url, simulator)
    assert text.exit_code == 0, text.output
    lines = ANSI.sub("", text.output).splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert any(re.match(r"  ok   workers  1 online$", line) for line in lines), lines
    assert API_KEY not in text.output


def test_a_dead_redis_fails_and_skips_what_needs_it(simulator: Simulator) -> None:
    result = doctor(f"redis://127.0.0.1:{free_port()}/0", simulator, "--json")
    assert result.exit_code == 1
    assert statuses(result) == {"redis": "fail", "settings": "skip", "queues": "skip",
                                "workers": "skip", "archive": "skip", "care360": "ok",
                                "web": "skip"}
    text = doctor(f"redis://:pw-in-url@127.0.0.1:{free_port()}/0", simulator)
    assert text.exit_code == 1
    assert "pw-in-url" not in text.output
    assert re.search(r"  fail redis    cannot reach redis://:\*\*\*@127\.0\.0\.1:\d+/0 "
                     r"\(ConnectionError\)", ANSI.sub("", text.output))


def test_no_worker_and_a_wrong_key_each_fail(simulator: Simulator, redis_url: str) -> None:
    result = doctor(redis_url, simulator, "--json", key="sk-rotated-wrong")
    assert result.exit_code == 1
    assert statuses(result) | {"redis": "-"} == {"redis": "-", "settings": "ok", "queues": "ok",
                                                 "workers": "fail", "archive": "skip",
                                                 "care360": "fail", "web": "skip"}
