"""The read pages: sign in and out, the overview, the jobs list and search, one job.

Every page is a plain function of what `cancelq.ops` and `cancelq.bulk` return, the same
calls the CLI makes (`snapshot`, `queue_heads`, `read_heartbeats`, `ReadThrough.query`,
`ReadThrough.get`): a page cannot disagree with `cancelq stats` or `cancelq audit`.
"""

from __future__ import annotations

import io
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from cancelq.bulk.runs import RunJob, write_csv
from cancelq.core.errors import ArchiveUnavailable
from cancelq.ops.deadletters import REPLAY_VERDICT
from cancelq.ops.health import queue_heads, read_heartbeats
from cancelq.ops.lookup import JobNotFound, short_ids
from cancelq.ops.readthrough import Located, ReadThrough
from cancelq.ops.stats import calls_per_minute, snapshot
from cancelq.store.records import Query as JobQuery
from web import chart
from web.auth import (
    CSRF_FIELD,
    check_csrf,
    check_password,
    clear_session,
    new_session,
    page_user,
    read_session,
    safe_next,
    write_session,
)
from web.console import console_of
from web.filters import OUTCOMES, STATES, JobFilters
from web.render import page
from web.search import search
from web.users import User

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
CSV_MAX_ROWS = 10_000
MAX_PAGES = 200
CurrentUser = Annotated[User, Depends(page_user)]
#: what the job page says after a replay (`?replay=...`): fixed texts, nothing reflected
FLASHES = {"replayed": "Replayed: the job is back on its queue.",
           "refused": "Not replayed: the job is not dead (see its state)."}


@router.get("/healthz")
def healthz() -> PlainTextResponse:
    """For healthchecks and `cancelq doctor`: the process answers (says nothing else)."""
    return PlainTextResponse("ok")


@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    session = read_session(request)
    fresh = session is None
    if session is None:  # a visitor's session: only the login form's CSRF token
        session = new_session(None)
        request.state.session = session
    response = page(request, "login.html", next=safe_next(next), error="")
    if fresh:
        write_session(request, response, session)
    return response


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    check_csrf(request, csrf_token)
    user = check_password(request, name, password)
    if user is None:
        return page(request, "login.html", 401, next=safe_next(next),
                    error="wrong name or password")
    response = RedirectResponse(safe_next(next), status_code=303)
    write_session(request, response, new_session(user))  # a new CSRF token with the login
    return response


@router.post("/logout")
def logout(
    request: Request, user: CurrentUser,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response


@router.get("/")
def overview(request: Request, user: CurrentUser) -> HTMLResponse:
    store = console_of(request).store
    snap = snapshot(store)
    heads = queue_heads(store, snap.taken_at)
    beats = read_heartbeats(store)
    online = [b for b in beats if b.online(snap.taken_at)]
    return page(request, "overview.html", snap=snap, heads=heads, beats=beats,
                online=online, now=snap.taken_at, chart=chart.draw(calls_per_minute(store)))


@router.get("/search")
def search_page(request: Request, user: CurrentUser,
                q: Annotated[str, Query(max_length=200)] = "") -> Response:
    found = search(console_of(request).reader, q)
    if found.job_id is not None:
        return RedirectResponse(f"/jobs/{found.job_id}", status_code=303)
    if found.filters is not None:
        return RedirectResponse("/jobs?" + urlencode(found.filters.params()), status_code=303)
    return _jobs(request, JobFilters(), 1, message=found.message, q=q)


def _filters(
    case: Annotated[str, Query(max_length=100)] = "",
    event: Annotated[str, Query(max_length=100)] = "",
    run: Annotated[str, Query(max_length=300)] = "",
    outcome: Annotated[str, Query(max_length=40)] = "",
    state: Annotated[str, Query(max_length=40)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
) -> JobFilters:
    """The listing's filters from the query string: one declaration for the page and its CSV."""
    return JobFilters(case, event, run, outcome, state, since, until)


Filters = Annotated[JobFilters, Depends(_filters)]


@router.get("/jobs")
def jobs_page(
    request: Request, user: CurrentUser, filters: Filters,
    page_no: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGES)] = 1,
) -> HTMLResponse:
    return _jobs(request, filters, page_no)


@router.get("/jobs.csv")
def jobs_csv(request: Request, user: CurrentUser, filters: Filters) -> Response:
    """The listing as `cancelq audit --csv` writes it (the run export's columns, formula-safe),
    newest first, at most `CSV_MAX_ROWS` jobs."""
    found = console_of(request).reader.query(filters.query(CSV_MAX_ROWS), with_attempts=True)
    out = io.StringIO()
    write_csv((RunJob.of(f.record) for f in found), out)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="jobs.csv"'})


def _jobs(request: Request, filters: JobFilters, page_no: int, *, message: str = "",
          q: str = "") -> HTMLResponse:
    """One page of the listing: the newest `page_no * PAGE_SIZE + 1`, sliced (pages deep
    in a listing are rare; the `+ 1` says whether there is a next one)."""
    query = filters.query(page_no * PAGE_SIZE + 1)
    found, warning = _read(console_of(request).reader, query)
    rows = found[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
    short = short_ids([f.record.job_id for f in rows])
    return page(request, "jobs.html", rows=rows, short=short, filters=filters,
                params=filters.params(), page_no=page_no,
                more=len(found) > page_no * PAGE_SIZE, outcomes=OUTCOMES, states=STATES,
                message=message, warning=warning, q=q)


def _read(reader: ReadThrough, query: JobQuery) -> tuple[list[Located], str]:
    """Redis and the archive; an archive that is down is a warning, Redis's jobs still shown
    (as `cancelq audit` does)."""
    try:
        return reader.query(query), ""
    except ArchiveUnavailable as exc:
        hot = reader.store.query(query)
        return [Located(r, "redis") for r in hot], f"archive unavailable, Redis only: {exc}"


@router.get("/jobs/{job_ref}")
def job_page(request: Request, user: CurrentUser, job_ref: str) -> Response:
    reader = console_of(request).reader
    job_id = reader.resolve(job_ref[:100], "job")
    if job_id != job_ref:
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)
    found = reader.get(job_id)
    if found is None:
        raise JobNotFound("job", job_id)
    flash = FLASHES.get(request.query_params.get("replay", ""), "")
    return page(request, "job.html", job=found.record, source=found.source,
                replay_verdict=REPLAY_VERDICT, flash=flash)
