"""Pruning the archive a month at a time: what `cancelq archive prune --before YYYY-MM` does.

On PostgreSQL a month is two partitions (`cancelq_jobs_y2026m10`, `cancelq_attempts_y2026m10`):
each is detached and dropped, all in one transaction, so a month goes whole or not at all,
and it costs a catalog change however many rows it holds (a `DELETE` of a billion rows
would bloat the tables, hold a long transaction and leave the vacuum to catch up).
`DETACH ... CONCURRENTLY` is not used: it cannot share a transaction with the month's other
table, and an interrupted one leaves a partition half detached for a DBA to finalize; a
plain detach holds the parent's lock for milliseconds, bounded here by a lock timeout so it
never queues behind a long report. SQLite has no partitions: the months' rows are deleted
(attempts, then jobs, one transaction).

Only whole months strictly before the current one (UTC) can be named, so a month the
archiver may still be writing is never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, text

from cancelq.archive.partitions import (
    PARTITION_LOCK,
    TABLES,
    existing_months,
    month_bounds,
    partition_name,
)
from cancelq.archive.schema import attempts, jobs
from cancelq.core.errors import InvalidInput

Month = tuple[int, int]
_MONTH = re.compile(r"(\d{4})-(\d{2})")

#: How long a detach waits for the parent table's lock before it gives up (one line, exit 1)
#: instead of queueing every archiver's insert behind a long-running query.
LOCK_TIMEOUT = "10s"


@dataclass(frozen=True, slots=True)
class PrunedMonth:
    """A month that was (or, in a dry run, would be) pruned, and its jobs then."""

    year: int
    month: int
    jobs: int
    tables: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def to_json(self) -> dict[str, Any]:
        return {"month": self.name, "jobs": self.jobs, "tables": list(self.tables)}


def parse_month(value: str, field: str = "--before", now: datetime | None = None) -> Month:
    """A YYYY-MM strictly before the current month (UTC), or `InvalidInput` in one line."""
    found = _MONTH.fullmatch(value.strip())
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise InvalidInput(field, f"expected a month as YYYY-MM (e.g. 2020-11), not {value!r}")
    month = (int(found.group(1)), int(found.group(2)))
    today = now or datetime.now(UTC)
    current = (today.year, today.month)
    if month >= current:
        raise InvalidInput(field, f"{value.strip()} is not in the past (this month is "
                           f"{current[0]:04d}-{current[1]:02d}); name an earlier month: "
                           "the months before it are pruned")
    return month


def prune(conn: Connection, before: Month, *, dry_run: bool) -> list[PrunedMonth]:
    """Every archived month before `before`, oldest first, dropped unless `dry_run`."""
    if conn.dialect.name == "postgresql":
        return _prune_partitions(conn, before, dry_run)
    return _prune_rows(conn, before, dry_run)


def _prune_partitions(conn: Connection, before: Month, dry_run: bool) -> list[PrunedMonth]:
    """Counted first, then detached and dropped: the parent tables' lock is held only for
    the catalog changes, never while a month's rows are counted."""
    out = []
    for year, month in sorted(m for m in existing_months(conn) if m < before):
        names = tuple(partition_name(table, year, month) for table, _ in reversed(TABLES))
        low, high = month_bounds(year, month)  # through the parent: a reader's grant
        count = conn.execute(text("SELECT count(*) FROM cancelq_jobs WHERE created_at >= "
                                  f"'{low}' AND created_at < '{high}'")).scalar_one()
        out.append(PrunedMonth(year, month, int(count), names))
    if dry_run or not out:
        return out
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
    for found in out:
        for (table, _), name in zip(reversed(TABLES), found.tables, strict=True):
            conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))  # attempts first
            conn.execute(text(f"DROP TABLE {name}"))
    return out


def _prune_rows(conn: Connection, before: Month, dry_run: bool) -> list[PrunedMonth]:
    bound = datetime(before[0], before[1], 1, tzinfo=UTC)
    month = func.substr(jobs.c.created_at, 1, 7)  # SQLite keeps times as ISO text
    counted = conn.execute(select(month, func.count()).where(jobs.c.created_at < bound)
                           .group_by(month).order_by(month)).all()
    out = [PrunedMonth(int(name[:4]), int(name[5:7]), int(n),
                       (attempts.name, jobs.name)) for name, n in counted]
    if not dry_run:
        conn.execute(delete(attempts).where(attempts.c.job_created_at < bound))
        conn.execute(delete(jobs).where(jobs.c.created_at < bound))
    return out
