"""Real processes: `producers/test_cli`; real Redis, workers, simulator."""


from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for
from tests.producers.test_cli import ATTEMPT_KEYS, JOB_KEYS, _id, run

pytestmark = pytest.mark.integration


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
    # each call names the worker process that made it: "host:pid"
    assert all(a["worker"] and a["worker"].rsplit(":", 1)[1].isdigit()
               for a in record["attempts"]), record["attempts"]
    wait_for(lambda: (r := real_store.get(jobs[0])) is not None and r.state is State.SETTLED)

    listed = json.loads(run("audit", "--case", case, "--json", env=env).stdout)
    assert sorted(j["job_id"] for j in listed) == sorted(jobs)
    assert all(JOB_KEYS <= set(j) for j in listed)
    assert json.loads(run("audit", "--event", flaky, "--json", env=env).stdout)[0][
        "job_id"] == jobs[1]
    assert json.loads(run("audit", "--outcome", "case_not_found", "--json", env=env).stdout) == []
    future = json.loads(run("audit", "--since", "2999-01-01", "--json", env=env).stdout)
    assert future == []
    human = run("audit", "--case", case, env={**env, "COLUMNS": "80"})
    assert jobs[0][:8] in human.stdout and "cancelled" in human.stdout
    assert max(len(line) for line in human.stdout.splitlines()) <= 80
    assert jobs[0] in run("audit", "--case", case, "--full-ids", env=env).stdout
    by_prefix = run("status", jobs[1][:8], "--json", env=env)
    assert json.loads(by_prefix.stdout)["job_id"] == jobs[1]


def test_bulk_then_run_follow_until_done(
    start_worker: WorkerFactory, simulator: Simulator, redis_url: str, tmp_path: Path
) -> None:
    start_worker(CANCEL_MAX_ATTEMPTS="2", CANCEL_RETRY_BASE_SECONDS="0.1",
                 CANCEL_RETRY_MAX_SECONDS="0.5")
    case = _id()
    events = [_id() for _ in range(12)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in events])
    simulator.control.script(events[0], [503] * 20)  # dead once its retries run out
    path = tmp_path / "cleanup.csv"
    path.write_text("case_id,event_id\n" + "".join(f"{case},{e}\n" for e in events))
    env = {"REDIS_URL": redis_url, "COLUMNS": "80"}
    assert run("bulk", str(path), "--run-id", "follow-me", env=env).returncode == 0

    followed = run("run", "follow-me", "--follow", "--wait", "120", env=env)
    assert followed.returncode == 1, followed.stderr  # one job did not end cancelled
    assert "finished: 12/12 done" in followed.stdout
    assert "ended otherwise than cancelled (retries_exhausted 1)" in followed.stderr
    assert "12/12 done" in followed.stderr and "jobs/s" in followed.stderr



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
    assert re.search(r"6b\. Archive: (\d+) of \1 jobs archived to sqlite:///", out), out
    assert "read back from the archive: job" in out
    assert "duplicate=True" in out

