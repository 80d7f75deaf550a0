"""The archiver against a real Redis and a real PostgreSQL: nothing lost, nothing doubled.

A job leaves Redis's pending set only after the archive committed it, and retention (with
an archive) deletes only jobs that left it. Each fault below is driven for real: the
database refusing connections, the archiver's own connection killed mid-batch
(`pg_terminate_backend`), the archiver stopped between the commit and the removal, two
archivers at once. A build that trims or forgets a job before the commit fails them.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import ArchiveUnavailable
from cancelq.core.lifecycle import Decision, State
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Attempt
from tests.archive.records import to_micros
from tests.store.test_audit import msg
from worker.scheduler import RetryScheduler

LONG_AGO = time.time() - 3600  # settled an hour ago: a retention of a minute has ended


def settle_jobs(store: AuditStore, n: int, *, outcome: str = "cancelled",
                retention: float = 60, now: float = LONG_AGO) -> list[str]:
    """`n` jobs enqueued, begun and settled (dead for a dead outcome) `now`."""
    decision: Decision = "dead" if outcome in ("unauthorized", "retries_exhausted") else "settle"
    job_ids = []
    for _ in range(n):
        job_id = str(uuid.uuid4())
        request = CancelRequest(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
                                run_id="run-a")
        store.enqueue(job_id, request, msg(job_id, request), queue=REALTIME_QUEUE, now=now)
        store.begin(job_id, request, max_attempts=8, queue=REALTIME_QUEUE,
                    queue_key=REALTIME_QUEUE, owner="w1", lease_seconds=30, now=now)
        call = Attempt(number=1, started_at=now, duration_ms=3.0, http_status=200,
                       error_class=None, error=None, verdict=outcome)
        assert store.finish(job_id, attempt=call, owner="w1", decision=decision,
                            outcome=outcome, retention_seconds=retention, now=now)
        job_ids.append(job_id)
    return job_ids


def set_ended(store: AuditStore, ended: dict[str, float]) -> None:
    """Move when jobs ended, as retention reads it: their entry in their outcome index."""
    for (job_id, at), fields in zip(ended.items(), store.job_fields(list(ended), ("outcome",)),
                                    strict=True):
        store.redis.zadd(store.keys.index_outcome(fields["outcome"]), {job_id: at})


def archived_rows(archive: Archive) -> tuple[int, int]:
    with archive.engine.connect() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM cancelq_jobs")).scalar_one()
        attempts = conn.execute(text("SELECT count(*) FROM cancelq_attempts")).scalar_one()
    return int(jobs), int(attempts)


def pending(store: AuditStore) -> int:
    return store.archive_backlog()[0]


def test_settled_jobs_are_archived_as_read_then_leave_the_pending_set(
    real_store: AuditStore, pg_archive: Archive
) -> None:
    done = settle_jobs(real_store, 3) + settle_jobs(real_store, 1, outcome="unauthorized")
    live = str(uuid.uuid4())
    request = CancelRequest(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()))
    real_store.enqueue(live, request, msg(live, request), queue=REALTIME_QUEUE)
    assert pending(real_store) == 4
    assert Archiver(real_store, pg_archive, batch=3).drain() == 4
    assert pending(real_store) == 0
    assert to_micros(pg_archive.get_many(done)) == to_micros(real_store.get_many(done))
    assert pg_archive.get(live) is None
    assert pg_archive.get(done[-1]).state is State.DEAD  # type: ignore[union-attr]


def test_an_archiver_stopped_between_commit_and_removal_doubles_nothing(
    real_store: AuditStore, pg_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle_jobs(real_store, 5)

    def killed(entries: Any) -> int:
        raise KeyboardInterrupt  # the process dies right after the commit

    with monkeypatch.context() as patch:
        patch.setattr(real_store, "archived", killed)
        with pytest.raises(KeyboardInterrupt):
            Archiver(real_store, pg_archive).archive_once()
    assert archived_rows(pg_archive) == (5, 5) and pending(real_store) == 5
    assert Archiver(real_store, pg_archive).drain() == 5  # the next archiver: all again
    assert archived_rows(pg_archive) == (5, 5) and pending(real_store) == 0


def test_a_connection_killed_mid_batch_loses_nothing_and_the_next_pass_catches_up(
    real_store: AuditStore, pg_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = settle_jobs(real_store, 4)
    real_insert = Archive._insert_attempts

    def killed_mid_batch(conn: Any, rows: Any) -> Any:
        # the job rows are in, uncommitted; now the server ends this very session
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return real_insert(conn, rows)

    with monkeypatch.context() as patch:
        patch.setattr(Archive, "_insert_attempts", staticmethod(killed_mid_batch))
        with pytest.raises(ArchiveUnavailable) as raised:
            Archiver(real_store, pg_archive).archive_once()
    assert "\n" not in str(raised.value) and str(raised.value).startswith("ARCHIVE_URL ")
    assert archived_rows(pg_archive) == (0, 0) and pending(real_store) == 4
    assert Archiver(real_store, pg_archive).drain() == 4  # a fresh connection from the pool
    assert archived_rows(pg_archive) == (4, 4)
    assert to_micros(pg_archive.get_many(job_ids)) == to_micros(real_store.get_many(job_ids))


def test_the_database_down_trims_nothing_early_and_the_archiver_catches_up(
    real_store: AuditStore, pg_archive: Archive
) -> None:
    job_ids = settle_jobs(real_store, 6, retention=60)  # retention ended long ago
    down = Archive("postgresql+psycopg://postgres:pw@127.0.0.1:1/cancelq")
    with pytest.raises(ArchiveUnavailable, match="connection refused"):
        Archiver(real_store, down).drain()
    assert real_store.trim(archived_only=True, retention_seconds=60) == 0  # not archived: kept
    assert len(real_store.get_many(job_ids)) == 6 and pending(real_store) == 6
    Archiver(real_store, pg_archive, batch=4).drain()  # the database is back
    assert archived_rows(pg_archive) == (6, 6) and pending(real_store) == 0
    assert real_store.trim(archived_only=True, retention_seconds=60) == 6
    assert real_store.get_many(job_ids) == []
    assert [r.job_id for r in pg_archive.get_many(job_ids)] == job_ids


def test_two_archivers_at_once_leave_one_row_per_job(
    real_store: AuditStore, pg_archive: Archive, pg_url: str
) -> None:
    settle_jobs(real_store, 40)
    second = Archive(pg_url)
    workers = [threading.Thread(target=Archiver(real_store, a, batch=7).drain)
               for a in (pg_archive, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    second.close()
    assert archived_rows(pg_archive) == (40, 40) and pending(real_store) == 0


def test_without_an_archive_trim_is_unchanged_and_drops_the_pending_entries(
    real_store: AuditStore,
) -> None:
    job_ids = settle_jobs(real_store, 3)
    assert pending(real_store) == 3
    assert real_store.trim(retention_seconds=60) == 3
    assert real_store.get_many(job_ids) == [] and pending(real_store) == 0


def test_without_an_archive_the_workers_retention_leaves_no_pending_entry_behind(
    real_store: AuditStore,
) -> None:
    """Nobody archives without ARCHIVE_URL: the entries go with the jobs retention trims (the
    worker's own pass), and those of jobs still in retention stay until their turn."""
    # more than one of the worker's trim batches, ended before its retention (a day)
    trimmed = settle_jobs(real_store, 450, now=time.time() - 2 * 86_400)
    kept = settle_jobs(real_store, 2, retention=86_400, now=time.time())
    settings = load_settings(archive_url=None, audit_retention_days=1)
    assert settings.archive_url is None
    scheduler = RetryScheduler(real_store, interval_seconds=0.1, settings=settings)
    assert scheduler.trim_once() == 450
    assert real_store.get_many(trimmed) == []
    assert sorted(i for i, _ in real_store.archive_pending(10)) == sorted(kept)


def test_trim_on_a_given_clock_deletes_only_what_that_clock_has_expired(
    real_store: AuditStore,
) -> None:
    """The simulated week of bench/archive.py: retention judged by the clock it is given."""
    day = 86_400.0
    first = settle_jobs(real_store, 2, retention=day, now=LONG_AGO - 3 * day)
    second = settle_jobs(real_store, 2, retention=day, now=LONG_AGO - day)
    assert real_store.trim(retention_seconds=day, now=LONG_AGO - 1.5 * day) == 2  # day one's
    assert real_store.get_many(first) == [] and len(real_store.get_many(second)) == 2
    assert real_store.trim(retention_seconds=day, now=LONG_AGO - 1.5 * day) == 0


def test_a_replayed_dead_job_settled_again_is_archived_again_with_every_attempt(
    real_store: AuditStore, pg_archive: Archive
) -> None:
    [job_id] = settle_jobs(real_store, 1, outcome="retries_exhausted", now=time.time())
    Archiver(real_store, pg_archive).drain()
    record = real_store.get(job_id)
    assert record is not None
    request = CancelRequest(case_id=record.case_id, event_id=record.event_id, run_id="run-a")
    assert real_store.replay(job_id, msg(job_id, request), who="ops").applied
    Archiver(real_store, pg_archive).drain()  # a live job: nothing to archive yet
    real_store.begin(job_id, request, max_attempts=8, queue=REALTIME_QUEUE,
                     queue_key=REALTIME_QUEUE, owner="w1", lease_seconds=30)
    call = Attempt(number=1, started_at=time.time(), duration_ms=1.0, http_status=200,
                   error_class=None, error=None, verdict="cancelled")
    real_store.finish(job_id, attempt=call, owner="w1", decision="settle", outcome="cancelled")
    assert pending(real_store) == 1
    Archiver(real_store, pg_archive).drain()
    assert to_micros(pg_archive.get_many([job_id])) == to_micros(real_store.get_many([job_id]))
    assert archived_rows(pg_archive) == (1, 3)  # the dead call, the replay note, the cancel


def test_jobs_that_ended_before_the_archive_are_backfilled_once(
    real_store: AuditStore, pg_archive: Archive
) -> None:
    job_ids = settle_jobs(real_store, 3) + settle_jobs(real_store, 1, outcome="unauthorized")
    real_store.redis.delete(real_store.keys.archive_pending)  # as an older release left them
    assert real_store.list_ended_for_archive(page=2) == 4
    assert real_store.list_ended_for_archive() == 0  # already listed
    Archiver(real_store, pg_archive).drain()
    assert sorted(r.job_id for r in pg_archive.get_many(job_ids)) == sorted(job_ids)
