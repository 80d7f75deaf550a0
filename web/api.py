"""The JSON API under /api/v1: what became of a request, without Redis access.

Read only (GET): replaying stays with the signed-in pages, behind the role and a CSRF token.
Authentication: HTTP Basic with a console user (any role), or the page session (the run
page polls it). Answers are the CLI's `--json` objects; errors are `{"detail": "..."}` with
400 (a bad value, naming the field), 401, 404 or 503 (Redis or the archive unreachable).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from cancelq.bulk.runs import list_runs
from cancelq.core.errors import InvalidInput
from cancelq.core.lifecycle import DEAD_OUTCOMES, Outcome, State
from cancelq.ops.deadletters import list_dead
from cancelq.ops.health import read_heartbeats
from cancelq.ops.lookup import JobNotFound
from cancelq.ops.readthrough import LocatedRun
from cancelq.ops.stats import calls_per_minute, snapshot
from web.auth import api_user
from web.console import console_of
from web.filters import MAX_RUN_CHARS, JobFilters
from web.progress import read_run, run_json
from web.schemas import DeadLetterOut, JobOut, OverviewOut, Problem, RunOut

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 404: {"model": Problem},
    503: {"model": Problem}}
router = APIRouter(prefix="/api/v1", dependencies=[Depends(api_user)], responses=ERRORS,
                   tags=["jobs"])


def _one_of(names: Iterable[str]) -> str:
    return "^(" + "|".join(sorted(names)) + ")$"


OutcomeName = Annotated[str | None, Query(pattern=_one_of(o.value for o in Outcome))]
StateName = Annotated[str | None, Query(pattern=_one_of(s.value for s in State))]
DeadOutcome = Annotated[str | None, Query(pattern=_one_of(o.value for o in DEAD_OUTCOMES))]
Limit = Annotated[int, Query(ge=1, le=1000)]
RunId = Annotated[str | None, Query(max_length=MAX_RUN_CHARS)]


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(request: Request, job_id: str) -> dict[str, Any]:
    """One job with every attempt: a whole id or any unique prefix (at least 4 hex digits)."""
    reader = console_of(request).reader
    found = reader.get(reader.resolve(job_id[:100], "job_id"))
    if found is None:
        raise JobNotFound("job_id", job_id[:100])
    return found.to_json()


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(
    request: Request,
    case_id: Annotated[str | None, Query(max_length=100)] = None,
    event_id: Annotated[str | None, Query(max_length=100)] = None,
    run_id: RunId = None,
    outcome: OutcomeName = None,
    state: StateName = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    """Jobs newest first, filtered as `cancelq audit` filters (times ISO 8601, no zone = UTC)."""
    filters = JobFilters(case_id or "", event_id or "", run_id or "",
                         outcome or "", state or "",
                         _iso(since), _iso(until))
    found = console_of(request).reader.query(filters.query(limit), with_attempts=True)
    return [f.to_json() for f in found]


@router.get("/runs", response_model=list[RunOut])
def get_runs(request: Request, limit: Limit = 50) -> list[dict[str, Any]]:
    """Bulk runs, newest first, with their progress."""
    store = console_of(request).store
    now = store.now()
    return [run_json(LocatedRun(p, "redis"), now) for p in list_runs(store, limit)]


@router.get("/runs/{run_id:path}", response_model=RunOut)
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    """A run's progress, rate and ETA (from the archive once Redis has forgotten it)."""
    if not run_id or len(run_id) > MAX_RUN_CHARS:
        raise InvalidInput("run_id", f"1 to {MAX_RUN_CHARS} characters")
    run = read_run(console_of(request).reader, run_id)
    if run is None:
        raise JobNotFound("run_id", run_id)
    return run


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def dead_letters(request: Request, outcome: DeadOutcome = None, run_id: RunId = None,
                 limit: Limit = 100) -> list[dict[str, Any]]:
    """Dead jobs, newest first, with why they died (`cancelq dlq list --json`)."""
    found = list_dead(console_of(request).store, outcome=outcome or None,
                      run_id=run_id or None, limit=limit)
    return [letter.to_json() for letter in found]


@router.get("/overview", response_model=OverviewOut)
def overview(request: Request) -> dict[str, Any]:
    """The `cancelq stats` snapshot, the workers' heartbeats, and calls per minute."""
    store = console_of(request).store
    snap = snapshot(store)
    workers = [{"node": b.node, "host": b.host, "online": b.online(snap.taken_at),
                "concurrency": b.concurrency, "queues": list(b.queues),
                "heartbeat_age_seconds": round(max(0.0, snap.taken_at - b.at), 1)}
               for b in read_heartbeats(store)]
    return {"stats": snap.to_json(), "workers": workers,
            "calls_per_minute": [m.to_json() for m in calls_per_minute(store)]}
