"""Reading a job wherever it lives: Redis while it is hot, the archive once retention has
deleted it from Redis. Every reader says where it found each job (`source`).

Redis is asked first and wins: it holds the newest version of a job (a dead job replayed
after it was archived is live again there). The archive is asked only when it can add
something: a job id Redis no longer has, a listing Redis cannot fill, a run Redis has
forgotten. Without `ARCHIVE_URL` every read is the store's, unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cancelq.bulk.runs import PAGE, RunJob, RunProgress, iter_run_jobs, run_progress
from cancelq.core.errors import ArchiveUnavailable, InvalidInput
from cancelq.core.lifecycle import State
from cancelq.ops.deadletters import DeadLetter, ReplayReport
from cancelq.ops.lookup import (
    MAX_CANDIDATES,
    AmbiguousJobId,
    JobNotFound,
    canonical_prefix,
    resolve_job_id,
)
from cancelq.store.audit import AuditStore
from cancelq.store.records import JobRecord, Query

if TYPE_CHECKING:  # not imported with the CLI: SQLAlchemy loads only when an archive is used
    from cancelq.archive.archive import Archive

Source = Literal["redis", "archive"]


@dataclass(frozen=True, slots=True)
class Located:
    """A job record and where it was read."""

    record: JobRecord
    source: Source

    def to_json(self) -> dict[str, Any]:
        """The job object of `--json`, with `"source": "redis" | "archive"`."""
        return {**self.record.to_json(), "source": self.source}


@dataclass(frozen=True, slots=True)
class LocatedRun:
    progress: RunProgress
    source: Source

    def to_json(self) -> dict[str, Any]:
        return {**self.progress.to_json(), "source": self.source}


class ReadThrough:
    """The store, and behind it the archive (None: no archive configured)."""

    def __init__(self, store: AuditStore, archive: Archive | None) -> None:
        self.store = store
        self.archive = archive

    def resolve(self, text: str, field: str = "job_id") -> str:
        """The one job `text` names (whole id or unique prefix), in Redis or else archived."""
        try:
            return resolve_job_id(self.store, text, field)
        except JobNotFound:
            if self.archive is None:
                raise
        prefix = canonical_prefix(text, field)
        if len(prefix) == 36:  # a whole id: one key lookup
            found = [prefix] if self.archive.get(prefix, with_attempts=False) else []
        else:
            found = self.archive.job_ids_with_prefix(prefix, MAX_CANDIDATES + 1)
        if not found:
            raise JobNotFound(field, text.strip())
        if len(found) > 1:
            raise AmbiguousJobId(field, text.strip(), found)
        return found[0]

    def get(self, job_id: str) -> Located | None:
        record = self.store.get(job_id)
        if record is not None:
            return Located(record, "redis")
        if self.archive is not None:
            archived = self.archive.get(job_id)
            if archived is not None:
                return Located(archived, "archive")
        return None

    def query(self, q: Query, *, with_attempts: bool = False) -> list[Located]:
        """Newest first (by created time), up to `q.limit`, from both. A job Redis still
        holds is Redis's alone, even where Redis's copy no longer matches `q` (a dead job
        replayed and settled since it was archived is not dead any more)."""
        hot = [Located(r, "redis") for r in self.store.query(q, with_attempts=with_attempts)]
        if self.archive is None:
            return hot
        cold = [Located(r, "archive") for r in self._archive_only(_newer(q, hot), with_attempts)]
        merged = sorted(hot + cold, key=lambda found: found.record.created_at, reverse=True)
        return merged[:q.limit]

    def _archive_only(self, q: Query, with_attempts: bool) -> list[JobRecord]:
        """The archive's newest `q.limit` jobs matching `q` that Redis does not hold: asked
        for more until that many are left once Redis's are set aside, or none are left."""
        assert self.archive is not None
        want = q.limit
        while True:
            found = self.archive.query(dataclasses.replace(q, limit=want),
                                       with_attempts=with_attempts)
            hot = set(self.store.existing([r.job_id for r in found]))
            cold = [r for r in found if r.job_id not in hot]
            if len(found) < want or len(cold) >= q.limit:
                return cold[:q.limit]
            want *= 2

    def dead(self, q: Query) -> list[DeadLetter]:
        """Dead jobs matching `q` (its state set to dead), newest first, with their attempts,
        wherever they are: `cancelq dlq list`."""
        query = dataclasses.replace(q, state=State.DEAD.value)
        return [DeadLetter(found.record, found.source)
                for found in self.query(query, with_attempts=True)]

    def run(self, run_id: str) -> LocatedRun:
        """A run's progress from its Redis counters, or, once Redis has forgotten the run,
        counted from its archived jobs (every one of them settled or dead)."""
        progress = run_progress(self.store, run_id)
        if progress.exists or self.archive is None:
            return LocatedRun(progress, "redis")
        counts = self.archive.counts(run_id)
        if not counts:
            return LocatedRun(progress, "redis")
        started = self.archive.run_started(run_id)
        return LocatedRun(RunProgress(run_id, started, counts), "archive")

    def archive_only_dead(self, *, outcome: str | None, run_id: str | None,
                          cap: int = 10_000) -> int:
        """How many dead jobs matching the filters only the archive holds (up to `cap`):
        `dlq replay --all` cannot replay them and says so. 0 when the archive is down."""
        if self.archive is None:
            return 0
        q = Query(state=State.DEAD.value, outcome=outcome, run_id=run_id, limit=cap)
        try:
            return len(self._archive_only(q, with_attempts=False))
        except ArchiveUnavailable:
            return 0

    def explain_missing(self, report: ReplayReport) -> ReplayReport:
        """A replay's "no such job" said exactly, for a job the archive still holds: it
        cannot be replayed (its record, lease and pair are gone from Redis), and what to
        run instead (a new job for its case and event)."""
        if self.archive is None:
            return report
        try:
            return self._explained(report)
        except ArchiveUnavailable:
            return report  # the replays are done: report them as Redis saw them

    def _explained(self, report: ReplayReport) -> ReplayReport:
        results = []
        for result in report.results:
            found = self._archived(result.job_id) if result.status == "missing" else None
            if found is not None:
                result = dataclasses.replace(
                    result, job_id=found.job_id, state=found.state.value,
                    outcome=found.outcome, detail=(
                        f"in the archive only ({found.state.value}, {found.outcome}): "
                        "retention deleted it from Redis, so it cannot be replayed; to try "
                        f"again: cancelq enqueue {found.case_id} {found.event_id}"))
            results.append(result)
        return dataclasses.replace(report, results=tuple(results))

    def _archived(self, text: str) -> JobRecord | None:
        assert self.archive is not None
        try:
            return self.archive.get(self.resolve(text), with_attempts=False)
        except (JobNotFound, InvalidInput):
            return None

    def archived_run_jobs(self, run_id: str) -> Iterator[RunJob]:
        """Every archived job of a run, with its last attempt, for the CSV export."""
        if self.archive is None:
            return
        for record in self.archive.run_jobs(run_id):
            yield RunJob.of(record)

    def run_jobs(self, run: RunProgress) -> Iterator[RunJob]:
        """Every job of a run Redis still knows, once, for the CSV export: Redis's jobs, then
        the archived ones Redis no longer holds (the archive is asked only when retention
        deleted some of the run: `RunProgress.trimmed`). A job trimmed between the two
        passes is written twice rather than missed (retention deletes only archived jobs)."""
        yield from iter_run_jobs(self.store, run.run_id)
        if self.archive is None or not run.trimmed:
            return
        page: list[JobRecord] = []
        for record in self.archive.run_jobs(run.run_id, page=PAGE):
            page.append(record)
            if len(page) == PAGE:
                yield from self._not_in_redis(page)
                page = []
        yield from self._not_in_redis(page)

    def _not_in_redis(self, records: list[JobRecord]) -> Iterator[RunJob]:
        hot = set(self.store.existing([r.job_id for r in records]))
        for record in records:
            if record.job_id not in hot:
                yield RunJob.of(record)


def _newer(q: Query, hot: list[Located]) -> Query:
    """`q`, bounded below by the created time of Redis's `limit`-th newest job when Redis
    fills the page: an archived job older than that cannot make the merged page. (In the
    usual case, the hot window's jobs archived but not trimmed yet, this keeps the archive's
    answer to about a page, instead of reading past every job Redis also holds.)"""
    if len(hot) < q.limit:
        return q
    times = sorted((found.record.created_at for found in hot), reverse=True)
    floor = times[q.limit - 1]
    return dataclasses.replace(q, since=floor if q.since is None else max(q.since, floor))
