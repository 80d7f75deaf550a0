"""`Archive`: settled and dead jobs written for good, and read back as the store's records.

Writes are idempotent and a batch is one transaction: on PostgreSQL the rows are streamed
with `COPY` and moved with one `INSERT ... SELECT ... ON CONFLICT` per table
(`cancelq.archive.copy`); on SQLite one prepared `INSERT ... ON CONFLICT` per table is sent
with every row. So archiving a job twice (an archiver
killed between the commit and taking the job off Redis's pending set, two archivers at
once) leaves one row, and a job's attempts land with it or not at all. A job row is
replaced only by a newer version of itself (`updated_at` later: a dead job replayed,
settled again, archived again); an attempt row never changes, because Redis only appends
to a job's attempt list.

Reads take the same `Query` filters as `AuditStore.query` and return the same `JobRecord`
and `Attempt` values, so a caller never needs to know where a job was found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import SQLAlchemyError

from cancelq.archive import migrate, rows
from cancelq.archive.copy import copy_rows, newest_per_key, upsert_jobs_clause
from cancelq.archive.database import explain, make_engine
from cancelq.archive.partitions import ensure_months
from cancelq.archive.prune import Month, PrunedMonth, prune
from cancelq.archive.schema import attempts, jobs
from cancelq.core.settings import Settings
from cancelq.core.urls import mask_url
from cancelq.store.keys import counter
from cancelq.store.records import Attempt, JobRecord, Query

T = TypeVar("T")
JOB_KEY = ("job_id", "created_at")
ATTEMPT_KEY = ("job_id", "job_created_at", "seq")


class Archive:
    """The archive at one URL; safe to share between threads (SQLAlchemy's pool)."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.where = mask_url(url)
        self.engine = engine or make_engine(url)
        self._months: set[tuple[int, int]] = set()
        self._checked = False

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Connection]:
        """A connection (a transaction when writing), the schema checked once; any
        database error comes out as one `ArchiveUnavailable` line naming ARCHIVE_URL."""
        try:
            with (self.engine.begin() if write else self.engine.connect()) as conn:
                if not self._checked:
                    migrate.require_current(conn, self.where)
                    self._checked = True
                yield conn
        except SQLAlchemyError as exc:
            raise explain(exc, self.url) from None

    def check(self) -> None:
        """Reachable and migrated, or `ArchiveUnavailable` saying which is not."""
        self._checked = False
        with self._connect():
            pass

    # -- writes ---------------------------------------------------------------------------

    def write(self, records: Sequence[JobRecord]) -> int:
        """Archive these settled or dead jobs with their attempts, in one transaction;
        returns how many were given. Running it again with the same records changes nothing.

        Months known to exist are not looked up again; if a batch fails while it relied on
        that (a month pruned since by another process, `cancelq archive prune`), it is tried
        once more with every month looked up and made again."""
        if not records:
            return 0
        now = datetime.now(UTC)
        job_rows = [rows.job_row(record, now) for record in records]
        attempt_rows = [row for record in records for row in rows.attempt_rows(record)]
        months = rows.months_of(records)
        try:
            self._write(months - self._months, job_rows, attempt_rows)
        except Exception:
            if not months & self._months:
                raise
            self._months.clear()
            self._write(months, job_rows, attempt_rows)
        self._months |= months
        return len(records)

    def _write(self, months: set[tuple[int, int]], job_rows: list[dict[str, Any]],
               attempt_rows: list[dict[str, Any]]) -> None:
        with self._connect(write=True) as conn:
            if months:
                ensure_months(conn, months)
            self._upsert_jobs(conn, job_rows)
            if attempt_rows:
                self._insert_attempts(conn, attempt_rows)

    def prune(self, before: Month, *, dry_run: bool = False) -> list[PrunedMonth]:
        """Drop every archived month before `before` (`cancelq.archive.prune`), oldest first;
        `dry_run` only lists them."""
        with self._connect(write=not dry_run) as conn:
            found = prune(conn, before, dry_run=dry_run)
        self._months -= {(m.year, m.month) for m in found}
        return found

    @staticmethod
    def _upsert_jobs(conn: Connection, job_rows: list[dict[str, Any]]) -> None:
        if conn.dialect.name == "postgresql":
            copy_rows(conn, jobs, newest_per_key(job_rows, JOB_KEY),
                      upsert_jobs_clause(jobs, JOB_KEY))
            return
        stmt = sqlite.insert(jobs)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=list(JOB_KEY),
            set_={c.name: stmt.excluded[c.name] for c in jobs.columns if c.name not in JOB_KEY},
            where=jobs.c.updated_at < stmt.excluded.updated_at,
        ), job_rows)

    @staticmethod
    def _insert_attempts(conn: Connection, attempt_rows: list[dict[str, Any]]) -> None:
        if conn.dialect.name == "postgresql":
            copy_rows(conn, attempts, attempt_rows,
                      f"ON CONFLICT ({', '.join(ATTEMPT_KEY)}) DO NOTHING")
            return
        conn.execute(sqlite.insert(attempts).on_conflict_do_nothing(
            index_elements=list(ATTEMPT_KEY)), attempt_rows)

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str, *, with_attempts: bool = True) -> JobRecord | None:
        found = self.get_many([job_id], with_attempts=with_attempts)
        return found[0] if found else None

    def get_many(self, job_ids: Sequence[str], *, with_attempts: bool = True) -> list[JobRecord]:
        """The archived jobs among `job_ids`, in the order given (missing ones left out)."""
        if not job_ids:
            return []
        with self._connect() as conn:
            found = self._records(conn, select(jobs).where(jobs.c.job_id.in_(job_ids)),
                                  with_attempts)
        by_id = {record.job_id: record for record in found}
        return [by_id[job_id] for job_id in job_ids if job_id in by_id]

    def query(self, q: Query, *, with_attempts: bool = False) -> list[JobRecord]:
        """Newest first (by created time), the same filters as `AuditStore.query`."""
        stmt = select(jobs).order_by(jobs.c.created_at.desc()).limit(q.limit)
        for column, value in ((jobs.c.case_id, q.case_id), (jobs.c.event_id, q.event_id),
                              (jobs.c.run_id, q.run_id), (jobs.c.outcome, q.outcome),
                              (jobs.c.state, q.state)):
            if value is not None:
                stmt = stmt.where(column == value)
        if q.since is not None:
            stmt = stmt.where(jobs.c.created_at >= rows.to_time(q.since))
        if q.until is not None:
            stmt = stmt.where(jobs.c.created_at <= rows.to_time(q.until))
        with self._connect() as conn:
            return self._records(conn, stmt, with_attempts)

    def job_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Archived job ids starting with `prefix` (what an operator typed)."""
        stmt = (select(jobs.c.job_id).where(jobs.c.job_id.startswith(prefix, autoescape=True))
                .order_by(jobs.c.job_id).limit(limit))
        with self._connect() as conn:
            return list(conn.execute(stmt).scalars())

    def counts(self, run_id: str) -> dict[str, int]:
        """A run's archived jobs as the store counts them: `jobs`, `state:*`, `outcome:*`."""
        stmt = (select(jobs.c.state, jobs.c.outcome, func.count())
                .where(jobs.c.run_id == run_id).group_by(jobs.c.state, jobs.c.outcome))
        out: dict[str, int] = {}
        with self._connect() as conn:
            for state, outcome, n in conn.execute(stmt):
                _add(out, counter("jobs"), n)
                _add(out, counter("state", state=state), n)
                if outcome:
                    _add(out, counter("outcome", outcome=outcome), n)
        return out

    def run_jobs(self, run_id: str, page: int = 1_000) -> Iterator[JobRecord]:
        """Every archived job of a run with its attempts, in job id order, a page at a time
        (keyset paging on the job id: a run of a million jobs is never held at once)."""
        after = ""
        while True:
            stmt = (select(jobs).where(jobs.c.run_id == run_id, jobs.c.job_id > after)
                    .order_by(jobs.c.job_id).limit(page))
            with self._connect() as conn:
                found = self._records(conn, stmt, with_attempts=True)
            yield from found
            if len(found) < page:
                return
            after = found[-1].job_id

    def run_started(self, run_id: str) -> float | None:
        """When the run's first archived job was created."""
        stmt = select(func.min(jobs.c.created_at)).where(jobs.c.run_id == run_id)
        with self._connect() as conn:
            first = conn.execute(stmt).scalar_one_or_none()
        return rows.from_time(first) if first is not None else None

    def count_jobs(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    @staticmethod
    def _records(conn: Connection, stmt: Select[Any], with_attempts: bool) -> list[JobRecord]:
        job_rows = [row._mapping for row in conn.execute(stmt)]
        found: dict[str, list[Attempt]] = {row["job_id"]: [] for row in job_rows}
        if with_attempts and found:
            by_seq = (select(attempts).where(attempts.c.job_id.in_(list(found)))
                      .order_by(attempts.c.job_id, attempts.c.seq))
            for row in conn.execute(by_seq):
                found[row.job_id].append(rows.to_attempt(row._mapping))
        return [rows.to_record(row, found[row["job_id"]]) for row in job_rows]


def _add(counts: dict[str, int], field: str, n: int) -> None:
    counts[field] = counts.get(field, 0) + n


def open_archive(settings: Settings) -> Archive | None:
    """The archive at `ARCHIVE_URL`, or None when none is configured (nothing connected)."""
    dsn = settings.archive_dsn()
    return Archive(dsn) if dsn else None


ArchiveFactory = Callable[[Settings], Archive | None]
