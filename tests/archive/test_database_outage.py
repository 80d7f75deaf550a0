"""The archive's PostgreSQL really stopped and started again, under the worker's archiver
thread: archiving pauses, Redis keeps (and retention spares) every job not yet archived,
and the thread catches up by itself once the database is back.

The database is a private cluster this test starts with `initdb`/`pg_ctl` (so it may stop
it), which also proves the fixture's fallback for machines where nothing answers on 5432.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.database import make_engine
from cancelq.store.audit import AuditStore
from tests.archive.conftest import PG_BIN, admin, as_postgres, private_cluster
from tests.archive.test_archiver import pending, settle_jobs
from tests.conftest import wait_for
from worker.archiving import ArchiverThread

pytestmark = pytest.mark.integration


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host, self.port, self.data = private_cluster(folder)

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                                     str(self.folder / "log"), *args]),
                       check=True, capture_output=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="cancelq-pg-outage-"))
    found = Cluster(folder)
    yield found
    found.pg_ctl("-m", "immediate", "stop")
    shutil.rmtree(folder, ignore_errors=True)


def test_the_database_down_pauses_archiving_keeps_every_job_and_catches_up(
    cluster: Cluster, real_store: AuditStore
) -> None:
    with admin((cluster.host, cluster.port)) as conn:
        conn.execute("CREATE DATABASE cancelq")
    url = f"postgresql+psycopg://postgres@{cluster.host}:{cluster.port}/cancelq"
    migrate.upgrade(make_engine(url))
    archive = Archive(url)
    thread = ArchiverThread(real_store, archive, interval=0.1)
    thread.start()
    try:
        before = settle_jobs(real_store, 5)
        wait_for(lambda: pending(real_store) == 0, timeout=20)
        cluster.pg_ctl("-m", "fast", "stop")
        during = settle_jobs(real_store, 5)
        assert pending(real_store) == 5
        assert real_store.trim(archived_only=True, retention_seconds=60) == 5  # archived only
        assert len(real_store.get_many(during)) == 5  # kept: not archived yet
        cluster.pg_ctl("-o", f"-p {cluster.port} -k {cluster.folder} "
                       "-c listen_addresses=127.0.0.1", "start")
        wait_for(lambda: pending(real_store) == 0, timeout=30)  # caught up by itself
        assert len(archive.get_many(before + during)) == 10
    finally:
        thread.stop()
