"""Every reader finds a job wherever it lives and says where: `cancelq status`, `audit` and
`run` after retention deleted the jobs from Redis, on a real Redis and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pytest
from click.testing import CliRunner, Result

from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Query
from producers.cli import main
from tests.archive.test_archiver import set_ended, settle_jobs
from tests.store.test_audit import msg


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **env})


def archived_and_trimmed(store: AuditStore, archive: Archive, n: int) -> list[str]:
    """`n` jobs of run-a settled, archived, then deleted from Redis by retention."""
    job_ids = settle_jobs(store, n)
    Archiver(store, archive).drain()
    assert store.trim(archived_only=True, retention_seconds=60) == n
    assert store.get_many(job_ids) == []
    return job_ids


@pytest.fixture
def env(real_store: AuditStore, redis_url: str, pg_url: str,
        pg_archive: Archive) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "ARCHIVE_URL": pg_url}


def test_status_reads_an_archived_job_and_says_so(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str], redis_url: str
) -> None:
    [cold] = archived_and_trimmed(real_store, pg_archive, 1)
    [hot] = settle_jobs(real_store, 1)
    shown = cli(env, "status", cold[:8], "--json")
    assert shown.exit_code == 0, shown.output
    job = json.loads(shown.output)
    assert (job["job_id"], job["source"], job["outcome"]) == (cold, "archive", "cancelled")
    assert len(job["attempts"]) == 1 and job["attempts"][0]["http_status"] == 200
    assert json.loads(cli(env, "status", hot, "--json").output)["source"] == "redis"
    assert "from the archive" in cli(env, "status", cold).output
    assert cli(env, "status", cold, "--wait", "1").exit_code == 0  # ended: no wait
    without = cli({"REDIS_URL": redis_url}, "status", cold)
    assert without.exit_code == 1 and "no job" in without.output


def test_audit_merges_redis_and_the_archive_with_every_filter(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str], pg_url: str
) -> None:
    cold = archived_and_trimmed(real_store, pg_archive, 3)
    hot = settle_jobs(real_store, 2)
    listed = json.loads(cli(env, "audit", "--run", "run-a", "--json").output)
    assert sorted((j["job_id"], j["source"]) for j in listed) == sorted(
        [(i, "archive") for i in cold] + [(i, "redis") for i in hot])
    case = pg_archive.get(cold[1])
    assert case is not None
    by_case = json.loads(cli(env, "audit", "--case", case.case_id, "--json").output)
    assert [j["job_id"] for j in by_case] == [cold[1]]
    by_event = json.loads(cli(env, "audit", "--event", case.event_id, "--json").output)
    assert [j["job_id"] for j in by_event] == [cold[1]]
    assert len(json.loads(cli(env, "audit", "--outcome", "cancelled", "--limit", "4",
                              "--json").output)) == 4
    assert json.loads(cli(env, "audit", "--state", "queued", "--json").output) == []
    table = cli(env, "audit", "--run", "run-a")
    assert "3 from the archive" in table.output
    down = cli({**env, "ARCHIVE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x"},
               "audit", "--json")
    assert down.exit_code == 0 and "archive unavailable, Redis only" in down.stderr
    assert sorted(j["job_id"] for j in json.loads(down.stdout)) == sorted(hot)


def test_run_counts_come_from_the_archive_once_redis_forgot_the_run(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str]
) -> None:
    missing = cli(env, "run", "run-a", "--json")
    assert missing.exit_code == 1 and "no run 'run-a'" in missing.output  # not in either
    settle_jobs(real_store, 2)
    assert json.loads(cli(env, "run", "run-a", "--json").output)["source"] == "redis"
    Archiver(real_store, pg_archive).drain()
    assert real_store.trim(archived_only=True, retention_seconds=60) == 2
    run = json.loads(cli(env, "run", "run-a", "--json").output)
    assert (run["source"], run["jobs"], run["done"], run["finished"]) == ("archive", 2, 2, True)
    assert run["outcomes"] == {"cancelled": 2} and run["started_at"]
    exported = cli(env, "run", "run-a", "--csv", "-")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 2 and {r["outcome"] for r in rows} == {"cancelled"}
    assert {r["last_http_status"] for r in rows} == {"200"}
    assert cli(env, "run", "run-a", "--follow").exit_code == 0


def test_replaying_a_dead_job_only_the_archive_holds_says_why_not_and_what_to_run(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str]
) -> None:
    [dead] = settle_jobs(real_store, 1, outcome="unauthorized")
    record = real_store.get(dead)
    assert record is not None
    Archiver(real_store, pg_archive).drain()
    assert real_store.trim(archived_only=True, retention_seconds=60) == 1
    result = cli(env, "dlq", "replay", dead[:8], "--json")
    assert result.exit_code == 1
    [one] = json.loads(result.stdout)["results"]
    assert (one["job_id"], one["status"], one["state"]) == (dead, "missing", "dead")
    assert one["detail"] == (
        "in the archive only (dead, unauthorized): retention deleted it from Redis, so it "
        f"cannot be replayed; to try again: cancelq enqueue {record.case_id} {record.event_id}")


def archive_and_trim(store: AuditStore, archive: Archive, trim: list[str]) -> None:
    """Archive every pending job, then let retention delete exactly `trim` from Redis."""
    Archiver(store, archive).drain()
    ended = [r.job_id for r in store.query(Query(limit=10_000)) if r.settled_at]
    set_ended(store, {i: 0 if i in trim else time.time() + 86_400 for i in ended})
    assert store.trim(archived_only=True, retention_seconds=60) == len(trim)


def dlq_json(env: dict[str, str], *args: str) -> list[tuple[str, str]]:
    shown = cli(env, "dlq", "list", "--json", *args)
    assert shown.exit_code == 0, shown.output
    return sorted((j["job_id"], j["source"]) for j in json.loads(shown.stdout))


def test_dlq_list_finds_dead_jobs_only_the_archive_holds_and_says_where_each_is(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str], redis_url: str
) -> None:
    cold = settle_jobs(real_store, 2, outcome="unauthorized")
    [cold_ex] = settle_jobs(real_store, 1, outcome="retries_exhausted")
    [replayed] = settle_jobs(real_store, 1, outcome="unauthorized")
    settled = settle_jobs(real_store, 1)
    [both] = settle_jobs(real_store, 1, outcome="unauthorized", now=time.time())
    archive_and_trim(real_store, pg_archive, [*cold, cold_ex, *settled])
    record = real_store.get(replayed)
    assert record is not None  # archived dead, then replayed: live again in Redis
    request = CancelRequest(case_id=record.case_id, event_id=record.event_id, run_id="run-a")
    assert real_store.replay(replayed, msg(replayed, request), who="ops").applied
    [hot] = settle_jobs(real_store, 1, outcome="unauthorized", now=time.time())  # not archived
    assert dlq_json(env) == sorted([(i, "archive") for i in (*cold, cold_ex)]
                                   + [(both, "redis"), (hot, "redis")])
    assert dlq_json(env, "--outcome", "retries_exhausted") == [(cold_ex, "archive")]
    assert dlq_json(env, "--run", "run-a", "--until", "30m") == sorted(
        [(i, "archive") for i in (*cold, cold_ex)])
    assert dlq_json(env, "--since", "30m") == sorted([(both, "redis"), (hot, "redis")])
    assert len(dlq_json(env, "--limit", "2")) == 2
    [one] = json.loads(cli(env, "dlq", "list", "--json", "--outcome", "retries_exhausted")
                       .stdout)
    assert one["why"] == "HTTP 200: retries_exhausted" and one["calls"] == 1  # its attempts
    table = cli(env, "dlq", "list")
    assert "5 dead job(s)" in table.output and "3 from the archive" in table.output
    assert table.output.count("(archive)") == 3  # which ones: replay cannot take them
    assert dlq_json({"REDIS_URL": redis_url}) == sorted([(both, "redis"), (hot, "redis")])
    down = cli({**env, "ARCHIVE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x"},
               "dlq", "list", "--json")
    assert down.exit_code == 0 and "archive unavailable, Redis only" in down.stderr
    assert len(json.loads(down.stdout)) == 2
    replay = cli(env, "dlq", "replay", cold_ex[:8])
    assert replay.exit_code == 1
    [line] = [x for x in replay.stderr.splitlines() if cold_ex in x]
    assert line.startswith(f"cancelq: {cold_ex}  in the archive only (dead, retries_exhausted)")
    every = cli(env, "dlq", "replay", "--all", "--dry-run")
    assert every.exit_code == 0 and "would replay 2 of 2 job(s)" in every.stderr
    assert "note: 3 dead job(s) only in the archive were not replayed" in every.stderr
    only = cli(env, "dlq", "replay", "--all", "--outcome", "retries_exhausted", "--json")
    assert json.loads(only.stdout)["results"] == [] and "note: 1 dead job(s)" in only.stderr


def test_a_run_half_trimmed_counts_and_exports_every_job_once(
    real_store: AuditStore, pg_archive: Archive, env: dict[str, str], redis_url: str
) -> None:
    ended = settle_jobs(real_store, 6)
    archive_and_trim(real_store, pg_archive, ended[:3])  # 3 archive only, 3 in both
    [dead] = settle_jobs(real_store, 1, outcome="unauthorized")  # in Redis only
    live = str(uuid.uuid4())
    request = CancelRequest(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
                            run_id="run-a")
    real_store.enqueue(live, request, msg(live, request), queue=REALTIME_QUEUE)
    run = json.loads(cli(env, "run", "run-a", "--json").output)
    assert (run["source"], run["jobs"], run["done"], run["pending"]) == ("redis", 8, 7, 1)
    assert run["states"] == {"queued": 1, "running": 0, "retrying": 0, "settled": 6,
                             "dead": 1}
    assert run["outcomes"] == {"cancelled": 6, "unauthorized": 1} and not run["finished"]
    exported = cli(env, "run", "run-a", "--csv", "-")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(r["job_id"] for r in rows) == sorted([*ended, dead, live])
    assert {r["job_id"]: r["state"] for r in rows}[ended[0]] == "settled"
    assert "3 of its jobs ended and were deleted" in cli(env, "run", "run-a").output
    alone = {"REDIS_URL": redis_url}  # no archive: the same counts, Redis's jobs only
    assert json.loads(cli(alone, "run", "run-a", "--json").output)["done"] == 7
    only_redis = list(csv.DictReader(io.StringIO(cli(alone, "run", "run-a", "--csv", "-")
                                                 .stdout)))
    assert len(only_redis) == 5
