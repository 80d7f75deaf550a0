"""`cancelq enqueue`, `status`, `audit` and `demo`, run as a user runs them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid

import fakeredis
import pytest
import redis
from click.testing import CliRunner

from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS, Keys
from producers.cli import main
from simulator.control import SimulatorControl, spawn_simulator
from tests.conftest import ROOT
from tests.producers.seed import add_job

JOB_KEYS = {"job_id", "case_id", "event_id", "run_id", "state", "outcome", "created_at",
            "settled_at", "attempts"}
ATTEMPT_KEYS = {"number", "started_at", "duration_ms", "http_status", "error"}


def _id() -> str:
    return str(uuid.uuid4())


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a child process: exit codes and streams as a user sees."""
    return subprocess.run(
        [sys.executable, "-c", "from producers.cli import main; main()", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["not-a-uuid", _id()], "case_id"),
        ([_id(), "1234"], "event_id"),
        ([_id(), _id(), "--reason", "x" * 2000], "reason"),
    ],
)
def test_enqueue_bad_input_is_one_line_exit_2_and_sends_nothing(
    args: list[str], field: str, redis_url: str
) -> None:
    result = run("enqueue", *args, env={"REDIS_URL": redis_url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_bad_setting_is_one_line_exit_2() -> None:
    result = run("audit", env={"REDIS_URL": "redis://127.0.0.1:1/0", "KEY_PREFIX": "no spaces"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "KEY_PREFIX" in result.stderr


def test_unreachable_redis_is_one_line_exit_1() -> None:
    result = run("status", _id(), env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1
    assert "REDIS_URL" in result.stderr and "Traceback" not in result.stderr


def test_enqueue_json_then_duplicate_then_force(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    case, event = _id(), _id()
    first = run("enqueue", case, event.upper(), "--json", env=env)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert set(created) == {"job_id", "duplicate"} and created["duplicate"] is False
    again = json.loads(run("enqueue", case, event, "--json", env=env).stdout)
    assert again == {"job_id": created["job_id"], "duplicate": True}
    # the pair's job is still queued: --force refuses (one line), never two live jobs
    refused = run("enqueue", case, event, "--force", env=env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "refused" in refused.stderr
    client = redis.Redis.from_url(redis_url)
    assert client.llen("cancellations") == 1  # the duplicate and the refusal sent nothing
    # once it has settled cancelled, --force makes a new job (cancel again)
    job = created["job_id"]
    client.hset(f"c360:job:{job}", mapping={FIELDS["state"]: "settled",
                                            FIELDS["outcome"]: "cancelled"})
    forced = json.loads(run("enqueue", case, event, "--force", "--json", env=env).stdout)
    assert forced["duplicate"] is False and forced["job_id"] != job
    assert client.llen("cancellations") == 2


def test_status_wait_times_out_with_exit_3(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    job = json.loads(run("enqueue", _id(), _id(), "--json", env=env).stdout)["job_id"]
    result = run("status", job, "--wait", "0.5", "--json", env=env)
    assert result.returncode == 3
    record = json.loads(result.stdout)
    assert record["state"] == "queued" and JOB_KEYS <= set(record)


def test_unknown_job_is_exit_1(redis_url: str) -> None:
    result = run("status", _id(), env={"REDIS_URL": redis_url})
    assert result.returncode == 1 and "no job" in result.stderr


def test_cli_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    for command in ("enqueue", "status", "audit", "simulator", "demo"):
        assert command in result.output



def test_stats_watch_prints_until_ctrl_c_which_exits_0(redis_url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from producers.cli import main; main()",
         "stats", "--watch", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    assert process.stdout is not None
    snapshots = [json.loads(process.stdout.readline()) for _ in range(2)]
    assert all(s["jobs"] == 0 and "queues" in s for s in snapshots)
    assert snapshots[0]["taken_at"] < snapshots[1]["taken_at"]  # refreshed, not repeated
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err


def test_stats_watch_refreshes_the_table(
    monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis
) -> None:
    store = AuditStore(fake_redis, Keys("c360"))
    monkeypatch.setattr("producers.cli.common.audit_store", lambda settings: store)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt  # Ctrl-C on the third wait
        add_job(store)

    monkeypatch.setattr("producers.cli.stats.time.sleep", sleep)
    result = CliRunner().invoke(main, ["stats", "--watch", "5"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert sleeps == [5.0, 5.0, 5.0] and "jobs 2" in result.stdout


def test_simulator_access_log_needs_no_log_level() -> None:
    process, url = spawn_simulator("--access-log", cwd=str(ROOT),
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        with SimulatorControl(url) as control:
            control.wait_ready(10)
        stdout = process.stdout
        assert stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        line = lines.get(timeout=30)  # uvicorn's access line for the readiness request
        assert "HTTP/1.1" in line and "GET" in line, line
    finally:
        process.terminate()
        process.wait(20)


def test_status_wait_spins_on_a_terminal_only(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    job = json.loads(run("enqueue", _id(), _id(), "--json", env=env).stdout)["job_id"]
    parent, child = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from producers.cli import main; main()",
             "status", job[:8], "--wait", "1"],
            stdout=subprocess.PIPE, stderr=child, text=True, timeout=60, cwd=ROOT,
            env={**os.environ, **env, "COLUMNS": "80"},
        )
        os.close(child)
        seen = b""
        while chunk := _read_pty(parent):
            seen += chunk
    finally:
        os.close(parent)
    assert done.returncode == 3
    text = seen.decode(errors="replace")
    assert f"job {job[:8]}: queued" in text  # the spinner's line, on the terminal
    assert "still queued after 1 s" in text and job in done.stdout


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child's side is closed and drained
        return b""
