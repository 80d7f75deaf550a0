"""The search box: a job id or prefix opens the job; an event or case id lists its jobs.

A whole UUID is tried as a job id, then an event id, then a case id (three key lookups at
most, through the same indexes as `cancelq audit --event/--case`); anything shorter is a job
id prefix, resolved as `cancelq status` resolves one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cancelq.core.contract import CANONICAL_UUID
from cancelq.core.errors import InvalidInput
from cancelq.ops.lookup import JobNotFound
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.records import Query
from web.filters import JobFilters


@dataclass(frozen=True, slots=True)
class Found:
    """Open `job_id`, or list with `filters`, or say `message` (nothing found)."""

    job_id: str | None = None
    filters: JobFilters | None = None
    message: str = ""


def search(reader: ReadThrough, text: str) -> Found:
    value = text.strip().lower()
    if not value:
        return Found(message="type a job id (or its first digits), an event id or a case id")
    if CANONICAL_UUID.fullmatch(value):
        return _whole(reader, value)
    try:
        return Found(job_id=reader.resolve(value, "search"))
    except (InvalidInput, JobNotFound) as exc:
        return Found(message=str(exc))


def _whole(reader: ReadThrough, value: str) -> Found:
    if reader.get(value) is not None:
        return Found(job_id=value)
    if reader.query(Query(event_id=value, limit=1)):
        return Found(filters=JobFilters(event=value))
    if reader.query(Query(case_id=value, limit=1)):
        return Found(filters=JobFilters(case=value))
    return Found(message=f"no job, event or case {value}")
