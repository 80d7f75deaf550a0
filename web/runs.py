"""The runs pages: every bulk run with its progress, one run live, and its CSV export.

The run page draws its progress bar on the server and then polls `/api/v1/runs/{run}` once
a second (`static/console.js`) to move it, with the rate, the ETA and the outcome counts,
until the run has finished. The export is `cancelq run --csv`'s: the same columns, every
cell formula-safe, read a page of jobs at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from cancelq.bulk.runs import RunJob, iter_run_jobs, list_runs, write_csv
from cancelq.ops.lookup import JobNotFound
from web.auth import page_user
from web.console import console_of
from web.progress import read_run
from web.render import page
from web.users import User

router = APIRouter(include_in_schema=False)
RUNS_SHOWN = 100
CSV_CHUNK_ROWS = 500
CurrentUser = Annotated[User, Depends(page_user)]


@router.get("/runs")
def runs_page(request: Request, user: CurrentUser) -> HTMLResponse:
    found = list_runs(console_of(request).store, RUNS_SHOWN + 1)
    return page(request, "runs.html", runs=found[:RUNS_SHOWN], more=len(found) > RUNS_SHOWN)


@router.get("/runs/{run_id:path}")
def run_page(request: Request, user: CurrentUser, run_id: str) -> HTMLResponse:
    run = read_run(console_of(request).reader, run_id[:300])
    if run is None:
        raise JobNotFound("run", run_id[:300])
    return page(request, "run.html", run=run)


@router.get("/export/{run_id:path}")
def run_csv(request: Request, user: CurrentUser, run_id: str) -> StreamingResponse:
    reader = console_of(request).reader
    located = reader.run(run_id[:300])
    if not located.progress.exists:
        raise JobNotFound("run", run_id[:300])
    jobs = (iter_run_jobs(reader.store, run_id) if located.source == "redis"
            else reader.archived_run_jobs(run_id))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:100] or "run"
    return StreamingResponse(
        _chunks(jobs), media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}.csv"'})


def _chunks(jobs: Iterable[RunJob]) -> Iterator[str]:
    """The CSV a few hundred rows at a time: a 100,000-job run is never held whole."""
    batch: list[RunJob] = []
    header = True
    for job in jobs:
        batch.append(job)
        if len(batch) >= CSV_CHUNK_ROWS:
            yield _csv(batch, header)
            batch, header = [], False
    if batch or header:
        yield _csv(batch, header)


def _csv(jobs: list[RunJob], header: bool) -> str:
    out = io.StringIO()
    write_csv(jobs, out)
    text = out.getvalue()
    return text if header else text.split("\r\n", 1)[1]
