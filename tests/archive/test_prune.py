"""`cancelq archive prune --before YYYY-MM`: whole months dropped, on a real PostgreSQL (its
partitions detached and dropped) and on SQLite (its rows deleted); a month not in the past
refused in one line; `--dry-run` lists and changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from cancelq.archive.archive import Archive
from cancelq.archive.prune import parse_month
from cancelq.core.errors import InvalidInput
from producers.cli import main
from tests.archive.records import settled


def at(year: int, month: int, day: int = 15) -> float:
    return datetime(year, month, day, 12, tzinfo=UTC).timestamp()


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["archive", "prune", *args], env={"ARCHIVE_URL": url})


def fill(archive: Archive) -> dict[str, list[str]]:
    """Jobs of three past months and of now, by month; two attempts each."""
    months = {"2020-10": at(2020, 10, 1), "2020-11": at(2020, 11, 30), "2020-12": at(2020, 12)}
    made = {name: [settled(created_at=t + i) for i in range(n)]
            for (name, t), n in zip(months.items(), (2, 3, 1), strict=True)}
    made["now"] = [settled(created_at=datetime.now(UTC).timestamp())]
    archive.write([record for records in made.values() for record in records])
    return {name: [r.job_id for r in records] for name, records in made.items()}


def partitions(archive: Archive) -> set[str]:
    with archive.engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT relname FROM pg_class WHERE relkind = 'r' "
            "AND relname LIKE 'cancelq\\_%\\_y2020m%'"
        )).scalars())


def rows(archive: Archive) -> tuple[int, int]:
    with archive.engine.connect() as conn:
        return (int(conn.execute(text("SELECT count(*) FROM cancelq_jobs")).scalar_one()),
                int(conn.execute(text("SELECT count(*) FROM cancelq_attempts")).scalar_one()))


def test_postgresql_drops_each_month_before_the_one_named_as_whole_partitions(
    pg_archive: Archive, pg_url: str
) -> None:
    jobs = fill(pg_archive)
    assert len(partitions(pg_archive)) == 6 and rows(pg_archive) == (7, 14)
    dry = cli(pg_url, "--before", "2020-12", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["months"] == [
        {"month": "2020-10", "jobs": 2,
         "tables": ["cancelq_attempts_y2020m10", "cancelq_jobs_y2020m10"]},
        {"month": "2020-11", "jobs": 3,
         "tables": ["cancelq_attempts_y2020m11", "cancelq_jobs_y2020m11"]}]
    assert len(partitions(pg_archive)) == 6 and rows(pg_archive) == (7, 14)  # unchanged
    done = cli(pg_url, "--before", "2020-12")
    assert done.exit_code == 0, done.output
    assert "2020-11: dropped 3 job(s)" in done.output
    assert "dropped 2 month(s) before 2020-12, 5 job(s)" in done.output
    assert partitions(pg_archive) == {"cancelq_jobs_y2020m12", "cancelq_attempts_y2020m12"}
    assert rows(pg_archive) == (2, 4)
    kept = jobs["2020-12"] + jobs["now"]
    assert [r.job_id for r in pg_archive.get_many(kept)] == kept
    assert pg_archive.get_many(jobs["2020-10"] + jobs["2020-11"]) == []
    again = cli(pg_url, "--before", "2020-12")
    assert again.exit_code == 0 and "dropped 0 month(s)" in again.output
    pg_archive.write([settled(created_at=at(2020, 11))])  # a late job of a pruned month
    assert rows(pg_archive) == (3, 6) and "cancelq_jobs_y2020m11" in partitions(pg_archive)


def test_sqlite_deletes_the_rows_of_the_months_before(sqlite_archive: Archive) -> None:
    jobs = fill(sqlite_archive)
    url = sqlite_archive.url
    dry = json.loads(cli(url, "--before", "2020-12", "--dry-run", "--json").output)
    assert [(m["month"], m["jobs"]) for m in dry["months"]] == [("2020-10", 2), ("2020-11", 3)]
    assert rows(sqlite_archive) == (7, 14)
    assert cli(url, "--before", "2020-12").exit_code == 0
    assert rows(sqlite_archive) == (2, 4)
    kept = jobs["2020-12"] + jobs["now"]
    assert [r.job_id for r in sqlite_archive.get_many(kept)] == kept


@pytest.mark.parametrize(("value", "problem"), [
    ("2026-13", "expected a month as YYYY-MM (e.g. 2020-11), not '2026-13'"),
    ("last year", "expected a month as YYYY-MM (e.g. 2020-11), not 'last year'"),
    ("2026-12", "2026-12 is not in the past (this month is 2026-12); name an earlier month: "
     "the months before it are pruned"),
    ("2031-01", "2031-01 is not in the past (this month is 2026-12)"),
])
def test_a_month_not_in_the_past_or_not_a_month_is_refused(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match="^--before: ") as raised:
        parse_month(value, now=datetime(2026, 12, 2, tzinfo=UTC))
    assert str(raised.value).startswith(f"--before: {problem}")
    assert parse_month("2026-11", now=datetime(2026, 12, 2, tzinfo=UTC)) == (2026, 11)


def test_the_cli_refuses_this_month_in_one_line_and_drops_nothing(
    sqlite_archive: Archive,
) -> None:
    fill(sqlite_archive)
    this_month = datetime.now(UTC).strftime("%Y-%m")
    refused = cli(sqlite_archive.url, "--before", this_month)
    assert refused.exit_code != 0
    line = refused.output.strip()
    assert "\n" not in line and f"--before: {this_month} is not in the past" in line
    assert rows(sqlite_archive) == (7, 14)


def test_a_month_locked_by_a_long_query_is_not_waited_for_and_nothing_is_dropped(
    pg_archive: Archive, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain DETACH needs the parent table to itself: behind a long report it gives up
    after `LOCK_TIMEOUT` (one line, exit 1) instead of queueing every archiver behind it."""
    monkeypatch.setattr("cancelq.archive.prune.LOCK_TIMEOUT", "500ms")
    fill(pg_archive)
    with pg_archive.engine.connect() as report:
        report.execute(text("SELECT count(*) FROM cancelq_jobs"))  # its lock lasts until it ends
        refused = cli(pg_url, "--before", "2020-12")
        report.rollback()
    assert refused.exit_code == 1
    assert refused.output.strip().endswith(
        "the archive's tables stayed locked by another session (a long query?): try again")
    assert len(partitions(pg_archive)) == 6 and rows(pg_archive) == (7, 14)
