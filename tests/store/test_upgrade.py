"""Upgrading a v1 store: records written by v1's own scripts (tests/store/v1/), then
`cancelq migrate`, then every verb on them (status, audit with each filter, run, dlq list and
replay, stats, the archive copy) answers what v1 held; nothing is lost, nothing of v1 stays.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from cancelq.archive import migrate as schema
from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.archive.database import make_engine
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_counters, decode_hash
from cancelq.store.keys import FIELDS, SCHEMA_VERSION
from cancelq.store.messages import build_task_message
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Attempt, JobRecord, Query
from cancelq.store.upgrade import (
    Migrated,
    SchemaError,
    check_schema,
    migrate,
    schema_version,
)
from producers.cli import main
from tests.store.v1 import v1_store

RUN = "run-up"
OWNER = "host:1:0123456789abcdef"


def _request(run: bool = True, case: str | None = None, event: str | None = None
             ) -> CancelRequest:
    return CancelRequest(case_id=case or str(uuid.uuid4()), event_id=event or str(uuid.uuid4()),
                         run_id=RUN if run else None, requested_by="ops", reason="upgrade")


@dataclass
class V1Jobs:
    """The jobs a v1 deployment left, by what happened to them."""

    ids: dict[str, str] = field(default_factory=dict)
    requests: dict[str, CancelRequest] = field(default_factory=dict)


def _enqueue(store: AuditStore, jobs: V1Jobs, name: str, request: CancelRequest,
             *, force: bool = False) -> str:
    job_id = str(uuid.uuid4())
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=REALTIME_QUEUE, task_id=job_id)
    got = store.enqueue(job_id, request, message, queue=REALTIME_QUEUE, force=force)
    assert got is not None and not got.duplicate
    jobs.ids[name], jobs.requests[name] = job_id, request
    return job_id


def _begin(store: AuditStore, job_id: str, request: CancelRequest, lease: float = 30) -> None:
    begun = store.begin(job_id, request, max_attempts=2, queue=REALTIME_QUEUE,
                        queue_key=REALTIME_QUEUE, owner=OWNER, lease_seconds=lease)
    assert begun.verdict == "run", begun


def _call(number: int, status: int, verdict: str, error: str | None = None) -> Attempt:
    return Attempt(number, time.time(), 41.5, status, "TransientResponse" if error else None,
                   error, verdict, 0.5 if verdict == "retry" else None)


def _retry(store: AuditStore, job_id: str, request: CancelRequest, number: int) -> None:
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=REALTIME_QUEUE, task_id=job_id)
    assert store.finish(job_id, attempt=_call(number, 503, "retry", "HTTP 503"), owner=OWNER,
                        decision="retry", delay_seconds=3600, retry_message=message)


def _end(store: AuditStore, job_id: str, number: int, outcome: str, status: int) -> None:
    dead = outcome in ("unauthorized", "retries_exhausted")
    assert store.finish(job_id, attempt=_call(number, status, outcome), owner=OWNER,
                        decision="dead" if dead else "settle", outcome=outcome,
                        retention_seconds=86_400)


def write_v1(store: AuditStore) -> V1Jobs:
    """One job in every state and history a v1 store can hold, written by v1's scripts."""
    jobs = V1Jobs()
    req = _request()
    job = _enqueue(store, jobs, "retried", req)  # a retry, then cancelled
    _begin(store, job, req)
    _retry(store, job, req, 1)
    store.redis.zadd(store.keys.delayed, {job: 0})  # its retry is due now
    _begin(store, job, req)
    _end(store, job, 2, "cancelled", 200)
    for name, outcome in (("dead", "unauthorized"), ("replayed", "unauthorized")):
        req = _request()
        job = _enqueue(store, jobs, name, req)
        _begin(store, job, req)
        _end(store, job, 1, outcome, 401)
    replayed, req = jobs.ids["replayed"], jobs.requests["replayed"]
    message = build_task_message({"job_id": replayed, **req.model_dump(exclude_none=True)},
                                 queue=REALTIME_QUEUE, task_id=replayed)
    assert store.replay(replayed, message, who="ops").applied
    _begin(store, replayed, req)
    _end(store, replayed, 1, "already_cancelled", 409)
    # a cancelled job, then a forced new one for the same pair: the pair moves to it
    req = _request(run=False)
    job = _enqueue(store, jobs, "superseded", req)
    _begin(store, job, req)
    _end(store, job, 1, "cancelled", 200)
    forced = _enqueue(store, jobs, "forced", req, force=True)
    # a foreign copy of the forced job's pair: a note on the live job, no job of its own
    dup = store.begin(str(uuid.uuid4()), req, max_attempts=2, queue=REALTIME_QUEUE,
                      queue_key=REALTIME_QUEUE, owner=OWNER, lease_seconds=30)
    assert (dup.verdict, dup.live_job) == ("duplicate", forced)
    req = _request()
    _begin(store, _enqueue(store, jobs, "running", req), req)
    req = _request()
    job = _enqueue(store, jobs, "retrying", req)
    _begin(store, job, req)
    _retry(store, job, req, 1)
    _enqueue(store, jobs, "queued", _request())
    jobs.ids["rejected"] = store.reject(
        str(uuid.uuid4()), {"case_id": "not-a-uuid", "event_id": str(uuid.uuid4())},
        "case_id: not a UUID", queue=REALTIME_QUEUE, queue_key=REALTIME_QUEUE)
    return jobs


def v1_records(client: redis.Redis, store: AuditStore) -> dict[str, JobRecord]:
    """Every job of a v1 store as v1 held it (its hash and its attempts list)."""
    out = {}
    for job_id in store.index_ids(store.keys.index_all):
        raw = decode_hash(client.hgetall(store.keys.job(job_id)))
        attempts = client.lrange(store.keys.v1("attempts", job_id=job_id), 0, -1)
        out[job_id] = JobRecord.from_v1_hash(raw, [str(a) for a in attempts])
    return out


@pytest.fixture
def upgraded(redis_url: str) -> Iterator[tuple[AuditStore, V1Jobs, dict[str, JobRecord]]]:
    """A v1 store with `write_v1`'s jobs, migrated; and what v1 held."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    old = v1_store(client)
    jobs = write_v1(old)
    store = AuditStore(client)
    held = v1_records(client, store)
    pairs = {k: client.get(k) for k in client.scan_iter(match="c360:pair:*")}
    counters = {k: decode_counters(client.hgetall(k)) for k in ("c360:stats",
                                                                 f"c360:run:{RUN}:stats")}
    assert schema_version(store) == 1
    with pytest.raises(SchemaError, match="cancelq migrate"):
        check_schema(store)
    done = migrate(store)
    assert (done.jobs, done.already) == (len(held), 0)
    for key, job_id in pairs.items():
        _, _, case_id, event_id = key.split(":")
        assert store.job_for_pair(case_id, event_id) == job_id, key
    assert {k: decode_counters(client.hgetall(k)) for k in counters} == counters
    yield store, jobs, held
    client.close()


def cli(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", "REDIS_URL": redis_url})


def test_migrate_keeps_every_record_and_leaves_no_v1_key(
    upgraded: tuple[AuditStore, V1Jobs, dict[str, JobRecord]],
) -> None:
    store, jobs, held = upgraded
    assert store.get_many(list(held)) == list(held.values())
    assert {r.job_id: r for r in store.query(Query(limit=1000), with_attempts=True)} == held
    assert schema_version(store) == SCHEMA_VERSION
    check_schema(store)
    left = [k for k in store.redis.scan_iter(match="c360:*")
            if k.startswith(("c360:pair:", "c360:idx:case:", "c360:idx:event:", "c360:expiry",
                             "c360:idx:state:settled")) or k.endswith(":attempts")]
    assert left == []
    again = migrate(store)  # safe to run twice: nothing left to do
    assert (again.jobs, again.already) == (0, 0)
    assert store.get_many(list(held)) == list(held.values())
    notes = held[jobs.ids["forced"]].attempts
    assert [a.error_class for a in notes] == ["Duplicate"]


def test_every_audit_filter_answers_as_before(
    upgraded: tuple[AuditStore, V1Jobs, dict[str, JobRecord]], redis_url: str
) -> None:
    store, jobs, held = upgraded
    records = list(held.values())

    def ids(result: Result) -> set[str]:
        assert result.exit_code == 0, result.output
        return {job["job_id"] for job in json.loads(result.output)}

    for name, job_id in jobs.ids.items():
        shown = cli(redis_url, "status", job_id, "--json")
        assert shown.exit_code == 0, (name, shown.output)
        assert json.loads(shown.output) == {**held[job_id].to_json(), "source": "redis"}
        req = held[job_id]
        by_case = {r.job_id for r in records if r.case_id == req.case_id}
        by_event = {r.job_id for r in records if r.event_id == req.event_id}
        assert {r.job_id for r in store.query(Query(case_id=req.case_id))} == by_case
        assert {r.job_id for r in store.query(Query(event_id=req.event_id))} == by_event
        if name != "rejected":  # its case is no UUID: the CLI refuses to look it up
            assert ids(cli(redis_url, "audit", "--case", req.case_id, "--json")) == by_case
            assert ids(cli(redis_url, "audit", "--event", req.event_id, "--json")) == by_event
    assert ids(cli(redis_url, "audit", "--json")) == set(held)
    assert ids(cli(redis_url, "audit", "--run", RUN, "--json")) == {
        r.job_id for r in records if r.run_id == RUN}
    for state in State:
        assert ids(cli(redis_url, "audit", "--state", state.value, "--json")) == {
            r.job_id for r in records if r.state is state}, state
    for outcome in {r.outcome for r in records if r.outcome}:
        assert ids(cli(redis_url, "audit", "--outcome", outcome, "--json")) == {
            r.job_id for r in records if r.outcome == outcome}, outcome
    middle = sorted(r.created_at for r in records)[len(records) // 2]
    assert {r.job_id for r in store.query(Query(since=middle, limit=100))} == {
        r.job_id for r in records if r.created_at >= middle}
    assert {r.job_id for r in store.query(Query(until=middle, limit=100))} == {
        r.job_id for r in records if r.created_at <= middle}


def test_run_stats_dlq_and_replay_work_on_migrated_jobs(
    upgraded: tuple[AuditStore, V1Jobs, dict[str, JobRecord]], redis_url: str
) -> None:
    store, jobs, held = upgraded
    run = cli(redis_url, "run", RUN, "--json")
    assert run.exit_code == 0, run.output
    got = json.loads(run.output)
    in_run = [r for r in held.values() if r.run_id == RUN]
    assert got["jobs"] == len(in_run)
    exported = cli(redis_url, "run", RUN, "--csv", "-")
    assert exported.exit_code == 0 and len(exported.stdout.strip().splitlines()) == 1 + len(in_run)
    stats = cli(redis_url, "stats", "--json")
    assert stats.exit_code == 0, stats.output
    dead = cli(redis_url, "dlq", "list", "--json")
    assert dead.exit_code == 0, dead.output
    assert jobs.ids["dead"] in dead.output
    replayed = cli(redis_url, "dlq", "replay", jobs.ids["dead"], "--json")
    assert replayed.exit_code == 0, replayed.output
    record = store.get(jobs.ids["dead"])
    assert record is not None and record.state is State.QUEUED
    assert record.attempts[:-1] == held[jobs.ids["dead"]].attempts  # a note added, none lost
    req = jobs.requests["dead"]
    assert store.job_for_pair(req.case_id, req.event_id) == jobs.ids["dead"]
    # the forced job holds its pair: a new request for it is its duplicate, as in v1
    again = jobs.requests["forced"]
    message = build_task_message({"job_id": str(uuid.uuid4()), "case_id": again.case_id,
                                  "event_id": again.event_id}, queue=REALTIME_QUEUE)
    dup = store.enqueue(str(uuid.uuid4()), again, message, queue=REALTIME_QUEUE)
    assert dup is not None and (dup.duplicate, dup.job_id) == (True, jobs.ids["forced"])


def test_the_archive_copies_migrated_jobs_with_every_attempt(
    upgraded: tuple[AuditStore, V1Jobs, dict[str, JobRecord]], sqlite_archive: Archive
) -> None:
    store, _, held = upgraded
    ended = [r.job_id for r in held.values() if r.state in (State.SETTLED, State.DEAD)]
    Archiver(store, sqlite_archive).drain()
    archived = {r.job_id: r for r in sqlite_archive.get_many(ended)}
    assert set(archived) == set(ended)
    for job_id in ended:
        assert [a.verdict for a in archived[job_id].attempts] == [
            a.verdict for a in held[job_id].attempts]
    assert store.trim(retention_seconds=1, archived_only=True, now=time.time() + 10) == \
        len(ended)


def test_an_interrupted_migration_resumes(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    write_v1(v1_store(client))
    store = AuditStore(client)
    held = v1_records(client, store)
    half = list(held)[:4]

    def stop(done: Migrated) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first page

    with pytest.raises(KeyboardInterrupt):
        migrate(store, page=len(half), progress=stop)
    assert schema_version(store) == 1  # not marked until the whole store is v2
    with pytest.raises(SchemaError):
        check_schema(store)
    done = migrate(store, page=3)
    assert (done.jobs, done.already) == (len(held) - len(half), len(half))
    assert store.get_many(list(held)) == list(held.values())
    client.close()


@pytest.fixture
def sqlite_archive(tmp_path: Path) -> Iterator[Archive]:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    schema.upgrade(make_engine(url))
    archive = Archive(url)
    yield archive
    archive.close()


def test_the_cli_refuses_a_v1_store_until_cancelq_migrate(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = write_v1(v1_store(client))
    refused = cli(redis_url, "status", jobs.ids["dead"])
    assert refused.exit_code == 2 and "run `cancelq migrate`" in refused.output
    done = cli(redis_url, "migrate", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"before": 1, "now": SCHEMA_VERSION,
                                       "jobs": len(jobs.ids), "already": 0, "leftovers": 0}
    assert cli(redis_url, "status", jobs.ids["dead"]).exit_code == 0
    again = cli(redis_url, "migrate")
    assert again.exit_code == 0 and "schema v2 -> v2: 0 jobs" in again.output
    client.close()


def test_a_job_changed_since_it_was_read_is_read_again(redis_url: str) -> None:
    """`lua/migrate_job.lua` writes only over the v1 record it was computed from."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = write_v1(v1_store(client))
    store = AuditStore(client)
    job_id = jobs.ids["queued"]
    stale = [store.keys.prefix, job_id, "queued||0", FIELDS["state"], "queued"]
    assert store.scripts("migrate_job", stale) == -1  # its updated_at is not ''
    assert client.hget(store.keys.job(job_id), "job_id") == job_id  # untouched
    held = v1_records(client, store)
    migrate(store)
    assert store.get_many(list(held)) == list(held.values())
    client.close()
