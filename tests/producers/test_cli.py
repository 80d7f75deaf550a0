"""`cancelq enqueue`, `status`, `audit` and `demo`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from click.testing import CliRunner

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from producers.cli import main
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for

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
    forced = json.loads(run("enqueue", case, event, "--force", "--json", env=env).stdout)
    assert forced["duplicate"] is False and forced["job_id"] != created["job_id"]
    client = redis.Redis.from_url(redis_url)
    assert client.llen("cancellations") == 2  # the duplicate sent nothing


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


@pytest.mark.integration
def test_status_and_audit_after_real_work(
    start_worker: WorkerFactory, simulator: Simulator, redis_url: str, real_store: AuditStore
) -> None:
    start_worker()
    case, good, flaky = _id(), _id(), _id()
    simulator.control.add_event(case, good)
    simulator.control.add_event(case, flaky)
    simulator.control.script(flaky, [500])
    env = {"REDIS_URL": redis_url}
    jobs = [json.loads(run("enqueue", case, e, "--json", env=env).stdout)["job_id"]
            for e in (good, flaky)]

    waited = run("status", jobs[1], "--wait", "30", "--json", env=env)
    assert waited.returncode == 0, waited.stderr
    record = json.loads(waited.stdout)
    assert (record["state"], record["outcome"]) == ("settled", "cancelled")
    assert [a["http_status"] for a in record["attempts"]] == [500, 200]
    assert all(ATTEMPT_KEYS <= set(a) for a in record["attempts"])
    wait_for(lambda: (r := real_store.get(jobs[0])) is not None and r.state is State.SETTLED)

    listed = json.loads(run("audit", "--case", case, "--json", env=env).stdout)
    assert sorted(j["job_id"] for j in listed) == sorted(jobs)
    assert all(JOB_KEYS <= set(j) for j in listed)
    assert json.loads(run("audit", "--event", flaky, "--json", env=env).stdout)[0][
        "job_id"] == jobs[1]
    assert json.loads(run("audit", "--outcome", "case_not_found", "--json", env=env).stdout) == []
    future = json.loads(run("audit", "--since", "2999-01-01", "--json", env=env).stdout)
    assert future == []
    human = run("audit", "--case", case, env=env)
    assert jobs[0] in human.stdout and "cancelled" in human.stdout


def test_cli_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    for command in ("enqueue", "status", "audit", "simulator", "demo"):
        assert command in result.output


@pytest.mark.integration
def test_demo_runs_the_whole_pipeline_and_stops_cleanly() -> None:
    """The README's first command: a private Redis is used when REDIS_URL does not answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CV_", "CARE360_"))}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    result = subprocess.run(
        [sys.executable, "-c", "from producers.cli import main; main()", "demo"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "private redis-server" in out or "embedded" in out
    for outcome in ("cancelled", "already_cancel", "not_custom_ev", "event_not_found",
                    "case_not_found", "retries_exhau"):
        assert outcome in out
    assert "Every job ended in its expected, recorded outcome." in out
    assert "duplicate=True" in out
