"""Dead letters and replay: the list (filter by run or reason), and the POSTs that replay one
job or many, through `cancelq.ops.deadletters.replay`, as `cancelq dlq replay` does.

Every POST checks the role (operator) and the CSRF token. Replaying many asks first: the
first POST shows what would be replayed (a dry run) and a confirm button, the second does
it. The operator's console name is recorded in each job's notes (`name (web)`), where the
CLI records `user@host`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cancelq.core.errors import InvalidInput
from cancelq.core.lifecycle import DEAD_OUTCOMES
from cancelq.ops.deadletters import dead_job_ids, list_dead, replay
from cancelq.ops.lookup import resolve_job_ids, short_ids
from web.auth import CSRF_FIELD, check_csrf, page_user, require_operator
from web.console import console_of
from web.filters import MAX_RUN_CHARS
from web.render import page
from web.users import User

router = APIRouter(include_in_schema=False)
DEAD_CHOICES = tuple(sorted(o.value for o in DEAD_OUTCOMES))
LIST_LIMIT = 200
#: jobs one confirmation may replay (more: filter, or use `cancelq dlq replay --all`)
MAX_REPLAY = 10_000
CurrentUser = Annotated[User, Depends(page_user)]
Token = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]


def who(user: User) -> str:
    return f"{user.name} (web)"


def _outcome(text: str) -> str | None:
    if text and text not in DEAD_CHOICES:
        raise InvalidInput("outcome", f"must be one of {', '.join(DEAD_CHOICES)}")
    return text or None


@router.get("/dead")
def dead_page(
    request: Request, user: CurrentUser,
    outcome: Annotated[str, Query(max_length=40)] = "",
    run: Annotated[str, Query(max_length=MAX_RUN_CHARS)] = "",
) -> HTMLResponse:
    letters = list_dead(console_of(request).store, outcome=_outcome(outcome),
                        run_id=run or None, limit=LIST_LIMIT + 1)
    shown = letters[:LIST_LIMIT]
    return page(request, "dead.html", letters=shown, more=len(letters) > LIST_LIMIT,
                short=short_ids([d.record.job_id for d in shown]), outcome=outcome, run=run,
                outcomes=DEAD_CHOICES)


@router.post("/jobs/{job_id}/replay")
def replay_one(request: Request, user: CurrentUser, job_id: str,
               csrf_token: Token = "") -> Response:
    check_csrf(request, csrf_token)
    require_operator(user)
    reader = console_of(request).reader
    job_id = reader.resolve(job_id[:100], "job")
    report = replay(reader.store, [job_id], who=who(user))
    verdict = "replayed" if report.ok else "refused"
    return RedirectResponse(f"/jobs/{job_id}?replay={verdict}", status_code=303)


@router.post("/dead/replay")
def replay_many(
    request: Request, user: CurrentUser, csrf_token: Token = "",
    job_id: Annotated[list[str] | None, Form(max_length=100)] = None,
    every: Annotated[str, Form(alias="all", max_length=5)] = "",
    outcome: Annotated[str, Form(max_length=40)] = "",
    run: Annotated[str, Form(max_length=MAX_RUN_CHARS)] = "",
    confirm: Annotated[str, Form(max_length=5)] = "",
) -> HTMLResponse:
    check_csrf(request, csrf_token)
    require_operator(user)
    reader = console_of(request).reader
    store = reader.store
    ids = (dead_job_ids(store, outcome=_outcome(outcome), run_id=run or None) if every
           else resolve_job_ids(store, dict.fromkeys(job_id or []), "job_id",
                                keep_missing=True))
    if not ids:
        raise InvalidInput("job_id", "no dead job chosen")
    if len(ids) > MAX_REPLAY:
        raise InvalidInput("job_id", f"{len(ids)} jobs: at most {MAX_REPLAY} at once "
                           "(filter by run or reason)")
    report = reader.explain_missing(replay(store, ids, who=who(user), dry_run=confirm != "1"))
    return page(request, "replayed.html", report=report, done=confirm == "1",
                every=every, outcome=outcome, run=run, ids=ids)
