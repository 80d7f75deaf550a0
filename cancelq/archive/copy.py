"""PostgreSQL's fast path for a batch: rows streamed with `COPY` into a temporary table,
then moved with one `INSERT ... SELECT ... ON CONFLICT` per table.

Why: the archiver must outrun the bulk drain (~1,000 jobs/s) by a wide margin; a
prepared upsert sent once per row spends its time in per-row round trips and parameter
handling, where `COPY` streams the batch in one go. The temporary table lives as long as
the pooled connection (`ON COMMIT DELETE ROWS`: empty again after each transaction), and
needs no more than the TEMP privilege every role has by default. The upsert's rules are the
archive's: a job row replaced only by a newer version of itself, an attempt never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table

from cancelq.archive.migrate import head


def copy_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
              on_conflict: str) -> None:
    """`rows` into `table` through a temporary twin, in `conn`'s transaction."""
    names = [column.name for column in table.columns]
    listed = ", ".join(names)
    # named for the schema version: a pooled connection's twin made before a migration
    # is never reused for the new shape
    staging = f"cancelq_in_{table.name}_v{head()}"
    raw = conn.connection.driver_connection
    assert raw is not None, "an open connection"
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table.name}) "
                       "ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {staging} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[name] for name in names])
        cursor.execute(f"INSERT INTO {table.name} ({listed}) SELECT {listed} FROM {staging} "
                       f"{on_conflict}")


def upsert_jobs_clause(table: Table, keys: Sequence[str]) -> str:
    """Replace a job row only with a newer version of the same job."""
    updates = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in table.columns
                        if c.name not in keys)
    return (f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} "
            f"WHERE {table.name}.updated_at < EXCLUDED.updated_at")


def newest_per_key(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per key, the latest `updated_at` (one INSERT may not update a row twice)."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        if key not in best or best[key]["updated_at"] < row["updated_at"]:
            best[key] = row
    return list(best.values())
