"""Runs: the progress of a bulk run from its counters, its jobs from its index, all runs.

Nothing here scans the keyspace: a run's progress is one HGETALL of its counters
(`c360:run:{run_id}:stats`), its jobs are read from its index (`c360:idx:run:{run_id}`) a
page at a time, and the list of runs is the `c360:runs` sorted set.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from cancelq.core.clock import iso_utc
from cancelq.core.lifecycle import DEAD_OUTCOMES
from cancelq.store import run_index
from cancelq.store.audit import AuditStore
from cancelq.store.records import Attempt, JobRecord

PAGE = 1_000
OPEN_STATES = ("queued", "running", "retrying")
FINAL_STATES = ("settled", "dead")
DEAD_OUTCOME_NAMES = frozenset(outcome.value for outcome in DEAD_OUTCOMES)
CSV_COLUMNS = (
    "job_id", "case_id", "event_id", "state", "outcome", "attempts", "last_http_status",
    "last_error", "reason", "created_at", "settled_at",
)


@dataclass(frozen=True, slots=True)
class RunProgress:
    run_id: str
    started_at: float | None
    counters: dict[str, int]

    @property
    def exists(self) -> bool:
        return self.started_at is not None or bool(self.counters)

    @property
    def jobs(self) -> int:
        return self.counters.get("jobs", 0)

    def state(self, name: str) -> int:
        """Jobs of the run in this state. An ended job that retention deleted from Redis has
        left its state counter (which counts records) but not its outcome counter (a
        lifetime total, taken back only by a replay): settled and dead are counted by
        outcome, so a run partly trimmed still counts each of its jobs once."""
        live = self.counters.get(f"state:{name}", 0)
        if name not in FINAL_STATES:
            return live
        dead = name == "dead"
        ended = sum(n for outcome, n in self.outcomes.items()
                    if (outcome in DEAD_OUTCOME_NAMES) == dead)
        return max(live, ended)

    @property
    def trimmed(self) -> int:
        """Jobs of the run that retention deleted from Redis (still counted here)."""
        live = sum(self.counters.get(f"state:{name}", 0) for name in (*OPEN_STATES, *FINAL_STATES))
        return max(0, self.jobs - live)

    @property
    def done(self) -> int:
        return sum(self.state(name) for name in FINAL_STATES)

    @property
    def pending(self) -> int:
        return sum(self.state(name) for name in OPEN_STATES)

    @property
    def finished(self) -> bool:
        return self.jobs > 0 and self.pending == 0

    @property
    def outcomes(self) -> dict[str, int]:
        return {
            key.removeprefix("outcome:"): value
            for key, value in sorted(self.counters.items())
            if key.startswith("outcome:") and value
        }

    def to_json(self) -> dict[str, Any]:
        """The documented, stable `cancelq run --json` object."""
        return {
            "run_id": self.run_id,
            "started_at": iso_utc(self.started_at),
            "jobs": self.jobs,
            "done": self.done,
            "pending": self.pending,
            "finished": self.finished,
            "percent": round(100.0 * self.done / self.jobs, 1) if self.jobs else 0.0,
            "states": {name: self.state(name) for name in (*OPEN_STATES, *FINAL_STATES)},
            "outcomes": self.outcomes,
        }


def run_progress(store: AuditStore, run_id: str) -> RunProgress:
    started, counters = run_index.run_entry(store, run_id)
    return RunProgress(run_id, started, counters)


def wait_for_run(
    store: AuditStore, run_id: str, seconds: float, *, poll: float = 0.5
) -> RunProgress:
    """Poll the counters until every job of the run is settled or dead, or time is up."""
    deadline = time.monotonic() + seconds
    progress = run_progress(store, run_id)
    while not progress.finished and time.monotonic() < deadline:
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        progress = run_progress(store, run_id)
    return progress


def list_runs(store: AuditStore, limit: int = 50) -> list[RunProgress]:
    """Newest first."""
    return [RunProgress(run_id, started, counters)
            for run_id, started, counters in run_index.newest_runs(store, limit)]


@dataclass(frozen=True, slots=True)
class RunJob:
    record: JobRecord
    last_http_status: int | None
    last_error: str | None

    def row(self) -> list[str]:
        """The CSV row (`CSV_COLUMNS`), every cell made safe for spreadsheets."""
        data = self.record.to_json()
        return [formula_safe(cell) for cell in (
            self.record.job_id, self.record.case_id, self.record.event_id,
            self.record.state.value, self.record.outcome or "", str(self.record.attempt_count),
            "" if self.last_http_status is None else str(self.last_http_status),
            self.last_error or "", self.record.reason or "",
            data["created_at"] or "", data["settled_at"] or "",
        )]

    @classmethod
    def of(cls, record: JobRecord) -> RunJob:
        """From a record read with its attempts (the last one gives status and error)."""
        last = record.attempts[-1] if record.attempts else None
        return cls(record, last.http_status if last else None, last.error if last else None)


#: What spreadsheets read as the start of a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(cell: str) -> str:
    """A leading apostrophe on a cell a spreadsheet would run as a formula (`=cmd|...`).

    The reason and the error are user and server text; opened in Excel or LibreOffice, a
    cell like `=HYPERLINK(...)` or `@SUM(...)` would be evaluated. The apostrophe makes it
    text and is shown by no spreadsheet.
    """
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def iter_run_jobs(store: AuditStore, run_id: str, *, page: int = PAGE) -> Iterator[RunJob]:
    """Every job of the run, oldest first (file order), a page of records at a time."""
    index = store.keys.index_run(run_id)
    start = 0
    while True:
        ids = store.index_ids(index, start, start + page - 1)
        if not ids:
            return
        start += len(ids)
        records = {r.job_id: r for r in store.get_many(ids, with_attempts=False)}
        for job_id, last in zip(ids, store.last_attempts(ids), strict=True):
            record = records.get(job_id)
            if record is None:  # expired by AUDIT_RETENTION_DAYS
                continue
            attempt = Attempt.decode(last) if last else None
            yield RunJob(
                record,
                attempt.http_status if attempt else None,
                attempt.error if attempt else None,
            )


def export_csv(store: AuditStore, run_id: str, out: IO[str]) -> int:
    """Write every job's outcome as CSV (header first); returns the number of jobs."""
    return write_csv(iter_run_jobs(store, run_id), out)


def write_csv(jobs: Iterable[RunJob], out: IO[str]) -> int:
    """`CSV_COLUMNS` then one formula-safe row per job; returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for job in jobs:
        writer.writerow(job.row())
        count += 1
    return count
