"""`Archive` against a real PostgreSQL (and SQLite through the same code): what is written
is what is read back, twice is once, and every failure is one line naming ARCHIVE_URL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.database import make_engine
from cancelq.archive.schema import BODY_EXCERPT_CHARS
from cancelq.core.errors import ArchiveUnavailable, ConfigError
from cancelq.core.lifecycle import State
from cancelq.core.settings import load_settings
from cancelq.store.records import Query
from tests.archive.records import settled


@pytest.fixture(params=["postgresql", "sqlite"])
def archive(request: pytest.FixtureRequest) -> Archive:
    name = "pg_archive" if request.param == "postgresql" else "sqlite_archive"
    found: Archive = request.getfixturevalue(name)
    return found


def rows(archive: Archive, table: str) -> int:
    with archive.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_job_reads_back_as_the_store_returned_it(archive: Archive) -> None:
    job = settled(body="x" * (BODY_EXCERPT_CHARS + 50))
    archive.write([job])
    back = archive.get(job.job_id)
    last = dataclasses.replace(job.attempts[-1], raw_body="x" * BODY_EXCERPT_CHARS)
    assert back == dataclasses.replace(job, attempts=(job.attempts[0], last))
    assert archive.get_many([job.job_id, "missing"], with_attempts=False) == [
        dataclasses.replace(job, attempts=())]


def test_archiving_twice_leaves_one_row_per_job_and_attempt(archive: Archive) -> None:
    jobs = [settled() for _ in range(3)]
    archive.write(jobs)
    archive.write(jobs)
    archive.write(jobs[:1])
    assert (rows(archive, "cancelq_jobs"), rows(archive, "cancelq_attempts")) == (3, 6)


def test_a_replayed_job_settled_again_replaces_its_row_and_keeps_every_attempt(
    archive: Archive,
) -> None:
    dead = settled(outcome="retries_exhausted", state=State.DEAD, attempts=2)
    archive.write([dead])
    again = settled(job_id=dead.job_id, case_id=dead.case_id, attempts=1,
                    updated_at=dead.updated_at + 100)
    replayed = dataclasses.replace(again, event_id=dead.event_id,
                                   attempts=dead.attempts + again.attempts)
    archive.write([replayed])
    archive.write([dead])  # an older copy arriving late changes nothing
    back = archive.get(dead.job_id)
    assert back is not None and back.outcome == "cancelled" and back.state is State.SETTLED
    assert [a.number for a in back.attempts] == [1, 2, 1]
    assert rows(archive, "cancelq_jobs") == 1


def test_queries_take_the_stores_filters_and_counts_its_fields(archive: Archive) -> None:
    case = "6f1c2c55-6f0e-4b8e-9d5e-0c1f6b2a9e11"
    old = settled(case_id=case, created_at=1_700_000_000.0)  # another month's partition
    new = settled(case_id=case, created_at=1_764_000_000.0, outcome="event_not_found")
    other = settled(run_id="run-2")
    archive.write([old, new, other])
    assert [r.job_id for r in archive.query(Query(case_id=case))] == [new.job_id, old.job_id]
    assert archive.query(Query(case_id=case, outcome="cancelled")) == [
        dataclasses.replace(old, attempts=())]
    assert [r.job_id for r in archive.query(Query(since=1_750_000_000.0, limit=5))] == [
        other.job_id, new.job_id]  # newest first: `other` was created half a second later
    assert archive.query(Query(until=1_750_000_000.0))[0].job_id == old.job_id
    assert archive.query(Query(event_id=other.event_id))[0].job_id == other.job_id
    assert archive.query(Query(state="queued")) == []
    assert archive.counts("run-1") == {"jobs": 2, "state:settled": 2, "outcome:cancelled": 1,
                                       "outcome:event_not_found": 1}
    assert archive.job_ids_with_prefix(new.job_id[:8]) == [new.job_id]


def test_a_schema_older_than_the_code_is_one_line_saying_to_migrate(pg_url: str) -> None:
    archive = Archive(pg_url)
    with pytest.raises(ArchiveUnavailable) as raised:
        archive.write([settled()])
    assert "not migrated" in str(raised.value)
    assert "run `cancelq archive migrate`" in str(raised.value)
    assert migrate.upgrade(make_engine(pg_url)) == (None, migrate.head())
    archive.check()
    assert archive.write([settled()]) == 1


def test_an_archive_at_0001_migrates_to_name_each_attempts_worker(pg_url: str) -> None:
    """Attempts archived before migration 0002 keep their rows (no worker); new ones have it."""
    from alembic import command

    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        config = migrate._config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text(
            "CREATE TABLE cancelq_attempts_old PARTITION OF cancelq_attempts FOR VALUES FROM "
            "('2020-01-01') TO ('2020-02-01')"))
        conn.execute(text(
            "INSERT INTO cancelq_attempts (job_id, job_created_at, seq, number, started_at) "
            "VALUES ('0123', '2020-01-05', 0, 1, '2020-01-05')"))
    assert migrate.upgrade(engine) == ("0001", "0002")
    with engine.connect() as conn:
        old = conn.execute(text("SELECT worker FROM cancelq_attempts WHERE job_id = '0123'"))
        assert old.scalar_one() is None
    archive = Archive(pg_url)
    record = settled()
    archive.write([record])
    got = archive.get(record.job_id)
    assert got is not None and [a.worker for a in got.attempts] == ["host-1:1001", "host-2:1002"]


def test_a_refused_connection_and_a_missing_database_are_one_line(pg_url: str) -> None:
    refused = Archive("postgresql+psycopg://cq:s3cret@127.0.0.1:1/db")
    with pytest.raises(ArchiveUnavailable) as raised:
        refused.check()
    line = str(raised.value)
    assert line.startswith("ARCHIVE_URL postgresql+psycopg://cq:***@127.0.0.1:1/db")
    assert "connection refused" in line and "s3cret" not in line and "\n" not in line
    missing = Archive(pg_url + "_nope")
    with pytest.raises(ArchiveUnavailable, match="does not exist: create it"):
        missing.check()


@pytest.mark.parametrize("url, expected", [
    ("mysql://u:pw@h/db", "expected postgresql+psycopg://"),
    ("postgresql+psycopg://u:pw@/db", "no host"),
    ("postgresql+psycopg://u:pw@h:99999/db", "the port must be a number"),
    ("postgresql+psycopg://u:pw@h:5432", "no database name"),
    ("sqlite://", "needs a file path"),
])
def test_a_bad_archive_url_is_refused_in_one_line_naming_it(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(ARCHIVE_URL=url)
    line = str(raised.value)
    assert line.startswith("ARCHIVE_URL: ") and expected in line
    assert "pw" not in line.replace("postgresql+psycopg", "")


def test_no_archive_url_is_no_archive() -> None:
    assert load_settings().archive_url is None
    assert load_settings(ARCHIVE_URL=" ").archive_url is None


def test_the_password_file_fills_a_url_without_one(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p@ss/word\n")
    url = "postgresql+psycopg://cancelq@db:5432/cancelq"
    settings = load_settings(ARCHIVE_URL=url, ARCHIVE_PASSWORD_FILE=str(secret))
    assert settings.archive_dsn() == "postgresql+psycopg://cancelq:p%40ss%2Fword@db:5432/cancelq"
    assert "p%40ss" not in repr(settings) and settings.archive_url == url
    given = load_settings(ARCHIVE_URL=url.replace("cancelq@", "cancelq:own@"),
                          ARCHIVE_PASSWORD_FILE=str(secret))
    assert given.archive_dsn() == url.replace("cancelq@", "cancelq:own@")  # the URL's wins
    missing = load_settings(ARCHIVE_URL=url, ARCHIVE_PASSWORD_FILE=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="ARCHIVE_PASSWORD_FILE: cannot read"):
        missing.archive_dsn()
