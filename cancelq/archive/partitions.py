"""PostgreSQL's monthly partitions of the archive, made before a batch needs them.

Both tables are partitioned by the month a job was created. A month's partitions are
created the first time a batch holds a job of that month (under an advisory lock, so two
archivers never race on the same DDL), and pruned as a whole: detach and drop one month
instead of deleting a billion rows one by one (docs/archive.md). SQLite has no partitions:
nothing to do there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

#: Any fixed number: the advisory lock every archiver takes before creating a partition.
PARTITION_LOCK = 836_017
TABLES = (("cancelq_jobs", "created_at"), ("cancelq_attempts", "job_created_at"))


def partition_name(table: str, year: int, month: int) -> str:
    return f"{table}_y{year:04d}m{month:02d}"


def month_bounds(year: int, month: int) -> tuple[str, str]:
    """The month's partition bounds: from its first instant (UTC) to the next month's."""
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01 00:00:00+00", f"{after[0]:04d}-{after[1]:02d}-01 00:00:00+00"


def ensure_months(conn: Connection, months: Iterable[tuple[int, int]]) -> None:
    """Create the partitions of these (year, month)s that do not exist yet (PostgreSQL).

    Months that exist are not touched, so a role without DDL rights (docs/operations.md)
    archives into the months `cancelq archive migrate` prepared."""
    if conn.dialect.name != "postgresql":
        return
    missing = set(months) - existing_months(conn)
    if not missing:
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
    for year, month in sorted(missing):
        low, high = month_bounds(year, month)
        for table, _column in TABLES:
            conn.execute(text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(table, year, month)} "
                f"PARTITION OF {table} FOR VALUES FROM ('{low}') TO ('{high}')"
            ))


def existing_months(conn: Connection) -> set[tuple[int, int]]:
    """The months that have partitions now (PostgreSQL; empty elsewhere)."""
    if conn.dialect.name != "postgresql":
        return set()
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'cancelq_jobs'"
    )).scalars()
    return {(int(n[-7:-3]), int(n[-2:])) for n in names}


def months_from(year: int, month: int, count: int) -> list[tuple[int, int]]:
    """`count` consecutive (year, month)s starting at this one."""
    first = year * 12 + month - 1
    return [((first + i) // 12, (first + i) % 12 + 1) for i in range(count)]
