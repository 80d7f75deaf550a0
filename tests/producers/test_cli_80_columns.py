"""Issue 20 at 80 columns: what is meant to be copied (a run id, a command, a host name) is
never wrapped; bulk intake is kept with its run and shown by `cancelq run` and `--json`."""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import redis
from click.testing import CliRunner
from rich.console import Console

from cancelq.ops.health import Heartbeat, write_heartbeat
from cancelq.store.audit import AuditStore
from cancelq.store.run_index import INTAKE_BAD_LINES
from producers.cli import main
from producers.cli.render import shorten_middle
from producers.dev import demo
from producers.dev.local_redis import LocalRedis
from tests.producers.test_cli import run

LONG_RUN = "bulk-20261201T204056Z-9e48d2-" + "nightly-cleanup-of-the-east-region" * 2
NARROW = {"COLUMNS": "80"}


def _id() -> str:
    return str(uuid.uuid4())


def _file(tmp_path: Path, good: int, bad: int) -> Path:
    rows = [f"{_id()},{_id()}" for _ in range(good)] + [f"bad-{n},{_id()}" for n in range(bad)]
    path = tmp_path / "rows.csv"
    path.write_text("case_id,event_id\n" + "\n".join(rows) + "\n\n")
    return path


def test_shorten_middle_keeps_both_ends() -> None:
    assert shorten_middle("short", 10) == "short"
    cut = shorten_middle("worker@" + "h" * 100 + ".example.com", 30)
    assert len(cut) == 30 and cut.startswith("worker@h") and cut.endswith("example.com")


def test_the_bulk_summary_prints_the_run_id_and_the_follow_command_whole(
    redis_url: str, tmp_path: Path,
) -> None:
    env = {"REDIS_URL": redis_url, **NARROW}
    done = run("bulk", str(_file(tmp_path, 3, 1)), "--run-id", LONG_RUN, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"run {LONG_RUN}" in lines and f"  cancelq run {LONG_RUN} --follow" in lines
    assert all(len(line) <= 80 for line in lines if LONG_RUN not in line), lines
    default = run("bulk", str(_file(tmp_path, 2, 0)), env=env)
    assert any(re.fullmatch(r"run bulk-\d{8}T\d{6}Z-[0-9a-f]{6}", line)
               for line in default.stdout.splitlines()), default.stdout


def test_cancelq_run_shows_the_intake_kept_with_the_run(redis_url: str, tmp_path: Path) -> None:
    env = {"REDIS_URL": redis_url, **NARROW}
    assert run("bulk", str(_file(tmp_path, 4, 12)), "--run-id", LONG_RUN, env=env).returncode == 0
    data = json.loads(run("run", LONG_RUN, "--json", env=env).stdout)
    intake = data["intake"]
    assert {k: intake[k] for k in ("rows", "accepted", "duplicates", "invalid", "blank")} == {
        "rows": 17, "accepted": 4, "duplicates": 0, "invalid": 12, "blank": 1}
    assert [b["line"] for b in intake["bad_lines"]] == list(range(6, 6 + INTAKE_BAD_LINES))
    assert intake["bad_lines"][0]["error"].startswith("case_id: not a valid UUID")
    text = run("run", LONG_RUN, env=env)
    lines = text.stdout.splitlines()
    assert lines[0] == f"run {LONG_RUN}"
    assert any(re.fullmatch(r"  started \d\d:\d\d:\d\d UTC", line) for line in lines), lines
    assert "  intake: 17 rows read, 4 accepted, 0 duplicates, 12 invalid, 1 blank" in lines
    assert "  first bad lines: 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, ..." in lines
    assert all(len(line) <= 80 for line in lines[1:]), lines


def test_a_run_of_only_bad_rows_is_still_a_run(redis_url: str, tmp_path: Path) -> None:
    env = {"REDIS_URL": redis_url}
    assert run("bulk", str(_file(tmp_path, 0, 3)), "--run-id", "all-bad", env=env).returncode == 0
    shown = run("run", "all-bad", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["jobs"] == 0 and data["intake"]["invalid"] == 3
    ttl = redis.Redis.from_url(redis_url).ttl("c360:run:all-bad:intake")
    assert 0 < ttl <= 7 * 86_400  # no job's retention will delete it


def test_doctor_never_splits_a_host_name(redis_url: str, real_store: AuditStore) -> None:
    node = "worker@" + "ip-10-20-30-40.eu-west-1.compute.internal.example"
    write_heartbeat(real_store, Heartbeat(node=node, host=node[7:], pid=1, concurrency=4,
                                          queues=("cancellations",), started_at=real_store.now(),
                                          at=real_store.now()))
    result = CliRunner().invoke(main, ["doctor"], env={
        "REDIS_URL": redis_url, "CARE360_BASE_URL": "http://127.0.0.1:1", **NARROW})
    lines = result.output.splitlines()
    assert any(node in line for line in lines), result.output
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)


def test_the_demos_audit_command_is_on_a_line_of_its_own(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=out, width=80, highlight=False))
    demo._say_goodbye(LocalRedis("redis://127.0.0.1:6379/15", "external"), "demo-1a2b3c4d5e6f")
    assert "  REDIS_URL=redis://127.0.0.1:6379/15 KEY_PREFIX=demo-1a2b3c4d5e6f cancelq audit" in (
        out.getvalue().splitlines())


def test_cancelq_flower_points_at_celery_in_one_line() -> None:
    done = run("flower", "--port", "5555")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "cancelq: flower is started by Celery: celery -A worker flower --port=5555 "
        "(needs FLOWER_BASIC_AUTH; docs/operations.md)"]
