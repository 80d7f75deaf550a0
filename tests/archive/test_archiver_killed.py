"""A real `cancelq archive run --follow` process SIGKILLed while it archives: the next run
archives the rest, and nothing is lost or doubled (real Redis, real PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import text

from cancelq.archive.archive import Archive
from cancelq.store.audit import AuditStore
from tests.archive.test_archiver import archived_rows, pending, settle_jobs
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration
JOBS = 1_000


def test_an_archiver_killed_mid_run_loses_and_doubles_nothing(
    real_store: AuditStore, pg_archive: Archive, pg_url: str, redis_url: str
) -> None:
    job_ids = settle_jobs(real_store, JOBS)
    env = {**os.environ, "REDIS_URL": redis_url, "ARCHIVE_URL": pg_url}
    argv = [sys.executable, "-c", "from producers.cli import main; main()", "archive", "run"]
    process = subprocess.Popen([*argv, "--follow", "--batch", "50"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        wait_for(lambda: archived_rows(pg_archive)[0] > 0, timeout=30, interval=0.01)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    left = pending(real_store)
    assert 0 < left < JOBS, left  # killed with work still to do
    again = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert archived_rows(pg_archive) == (JOBS, JOBS) and pending(real_store) == 0
    with pg_archive.engine.connect() as conn:
        ids = set(conn.execute(text("SELECT job_id FROM cancelq_jobs")).scalars())
    assert ids == set(job_ids)
