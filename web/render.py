"""Templates and what they share: every value escaped (Jinja2 autoescape, always on), times
in UTC, short ids, and the signed-in user and CSRF token on every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from cancelq.core.clock import iso_utc
from web.auth import CSRF_FIELD, read_session
from web.console import console_of

HERE = Path(__file__).resolve().parent
#: a body excerpt on the job page: enough to read an error, not a whole page of HTML
EXCERPT_CHARS = 600


def utc(ts: float | None) -> str:
    """`2026-12-02 01:02:03` (UTC, as the CLI's tables show it), '-' for none."""
    stamp = iso_utc(ts, millis=False)
    return "-" if stamp is None else stamp.replace("T", " ").removesuffix("Z")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def excerpt(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + " ..."


def make_templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(utc=utc, ago=ago, excerpt=excerpt,
                       q=lambda value: quote(str(value), safe=""))
    env.globals.update(urlencode=urlencode, csrf_field=CSRF_FIELD)
    return Jinja2Templates(env=env)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `name` with the user and the session's CSRF token beside `context`."""
    session = read_session(request)
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("csrf", session.csrf if session else "")
    response: HTMLResponse = console_of(request).templates.TemplateResponse(
        request, name, context, status_code=status_code)
    return response
