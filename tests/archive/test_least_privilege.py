"""The archive under the roles docs/operations.md tells a DBA to grant: an owner that
migrates, a writer that may only read and write rows. The writer archives into the months
`migrate` prepared, and is refused in one line for what only the owner may do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.database import make_engine
from cancelq.core.errors import ArchiveUnavailable
from tests.archive.conftest import admin
from tests.archive.records import settled


@pytest.fixture
def roles(pg_server: tuple[str, int], pg_url: str) -> Iterator[tuple[str, str]]:
    """(owner URL, writer URL) on the test's database, the roles dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    owner, writer = f"cq_owner_{tag}", f"cq_writer_{tag}"
    database = pg_url.rsplit("/", 1)[1]
    with admin(pg_server) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN")
        conn.execute(f"CREATE ROLE {writer} LOGIN")
        conn.execute(f'ALTER DATABASE "{database}" OWNER TO {owner}')
    base = f"postgresql+psycopg://{{}}@{pg_server[0]}:{pg_server[1]}/{database}"
    yield base.format(owner), base.format(writer)
    with admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f"DROP ROLE {writer}")
        conn.execute(f"DROP ROLE {owner}")


def test_a_writer_without_ddl_rights_archives_into_the_prepared_months(
    roles: tuple[str, str],
) -> None:
    owner_url, writer_url = roles
    engine = make_engine(owner_url)
    migrate.upgrade(engine)
    writer_role = writer_url.split("//")[1].split("@")[0]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE ON cancelq_jobs, cancelq_attempts "
                             f"TO {writer_role}")
        conn.exec_driver_sql(f"GRANT SELECT ON {migrate.VERSION_TABLE} TO {writer_role}")
    engine.dispose()
    writer = Archive(writer_url)
    job = settled(created_at=time.time())
    assert writer.write([job]) == 1 and writer.write([job]) == 1  # the upsert: UPDATE too
    assert writer.get(job.job_id) is not None
    with pytest.raises(ArchiveUnavailable) as raised:
        writer.write([settled(created_at=1_500_000_000.0)])  # 2017: no partition prepared
    assert "permission denied" in str(raised.value) and "cancelq archive migrate" in str(
        raised.value)
    owner = Archive(owner_url)
    owner.write([settled(created_at=1_500_000_000.0)])  # the owner may make 2017-07
    with pytest.raises(ArchiveUnavailable) as refused:
        writer.prune((2017, 8))
    assert "only the tables' owner may drop months" in str(refused.value)
    assert [m.name for m in owner.prune((2017, 8))] == ["2017-07"]
    writer.close()
    owner.close()
