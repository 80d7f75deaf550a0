"""A real worker with `ARCHIVE_URL` set archives on its own, and its retention then deletes
from Redis only what the archive holds: the hot window can be seconds, nothing is lost.
Asked to (`ARCHIVE_MIGRATE=1`), it migrates a database that was never migrated first."""

from __future__ import annotations

import uuid

import pytest

from cancelq.archive.archive import Archive
from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from producers.enqueue import submit
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_a_worker_migrates_then_archives_settled_jobs_before_its_retention_trims_them(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, pg_url: str,
) -> None:
    case, events = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(5)]
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in events])
    # never migrated; ~2 s in Redis
    worker = start_worker(ARCHIVE_URL=pg_url, ARCHIVE_MIGRATE="1",
                          AUDIT_RETENTION_DAYS="0.00002")
    job_ids = [submit(CancelRequest.parse(case_id=case, event_id=e), store=real_store,
                      queue=REALTIME_QUEUE).job_id for e in events]
    archive = Archive(pg_url)
    try:
        archived = wait_for(lambda: len(archive.get_many(job_ids)) == 5 and
                            archive.get_many(job_ids), timeout=90)
    except AssertionError as exc:
        states = [(r.job_id[:8], r.state.value) for r in real_store.get_many(job_ids)]
        raise AssertionError(f"{exc}; in Redis: {states}\n{worker.log()[-3000:]}") from None
    finally:
        archive.close()
    assert {r.outcome for r in archived} == {"cancelled"}
    assert all(len(r.attempts) == 1 and r.attempts[0].http_status == 200 for r in archived)
    wait_for(lambda: real_store.get_many(job_ids) == [], timeout=60)  # then trimmed
    assert real_store.archive_backlog() == (0, None)
