"""Who is asking: a signed session cookie for pages, HTTP Basic (or that cookie) for the API,
and a CSRF token on every POST.

The session is a cookie signed with WEB_SECRET (itsdangerous): the user's name, a CSRF token
and the fingerprint of the user's password hash, so changing a password voids the sessions
made with the old one. HttpOnly, SameSite=Lax, Secure whenever the request came over https
(directly, or from a proxy uvicorn trusts: `FORWARDED_ALLOW_IPS`). The role is read from the
users at each request, never from the cookie: demoting an operator takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature

from web.console import console_of
from web.users import User

SESSION_COOKIE = "cancelq_session"
SESSION_SECONDS = 8 * 3600
SESSION_SALT = "cancelq-web-session"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True, slots=True)
class Session:
    """`user` None: a visitor who has not signed in yet (the login form's CSRF token)."""

    user: str | None
    csrf: str
    fingerprint: str = ""


class LoginRequired(Exception):
    """A page asked for without a valid session: the handler redirects to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """Signed in, but not allowed (a viewer replaying, a POST without its CSRF token)."""


class Unauthorized(Exception):
    """An API call without valid credentials: 401 with a Basic challenge."""


class Throttled(Exception):
    """Too many failed sign-ins for this name from this client: 429 for a while."""


def check_password(request: Request, name: str, password: str, *,
                   remember: bool = False) -> User | None:
    """The user if the password is theirs, with failures counted per (name, client)."""
    console = console_of(request)
    client = request.client.host if request.client else "-"
    wait = console.throttle.wait_seconds(name, client)
    if wait > 0:
        raise Throttled(f"too many failed sign-ins for {name[:64]}: try again in "
                        f"{wait / 60:.0f} min")
    user = console.verifier.check(name, password, remember=remember)
    if user is None:
        console.throttle.failed(name, client)
    else:
        console.throttle.succeeded(name, client)
    return user


def new_session(user: User | None) -> Session:
    return Session(user.name if user else None, secrets.token_urlsafe(32),
                   user.fingerprint if user else "")


def read_session(request: Request) -> Session | None:
    """The request's session if its cookie is ours, unexpired and well formed."""
    if hasattr(request.state, "session"):
        cached: Session | None = request.state.session
        return cached
    found: Session | None = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            raw = console_of(request).signer.loads(cookie, max_age=SESSION_SECONDS)
            found = Session(raw.get("u"), str(raw["c"]), str(raw.get("f", "")))
        except (BadSignature, KeyError, TypeError, AttributeError):
            found = None
    request.state.session = found
    return found


def write_session(request: Request, response: Response, session: Session) -> None:
    token = console_of(request).signer.dumps(
        {"u": session.user, "c": session.csrf, "f": session.fingerprint})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")
    request.state.session = session


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


def session_user(request: Request) -> User | None:
    """The signed-in user, if the session names a user who still exists, unchanged."""
    session = read_session(request)
    if session is None or session.user is None:
        return None
    user = console_of(request).verifier.users.get(session.user)
    if user is None or not hmac.compare_digest(user.fingerprint, session.fingerprint):
        return None
    return user


def page_user(request: Request) -> User:
    """Dependency of every page: the user, or a redirect to the login form."""
    user = session_user(request)
    if user is None:  # back to the same page, filters and all, once signed in
        query = request.url.query
        raise LoginRequired(request.url.path + (f"?{query}" if query else ""))
    request.state.user = user
    return user


def check_csrf(request: Request, token: str) -> None:
    """The form's token must be the session's (compared in constant time)."""
    session = read_session(request)
    if session is None or not token or not hmac.compare_digest(session.csrf, token):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


def require_operator(user: User) -> None:
    if not user.can_replay:
        raise Forbidden(f"{user.name} is a viewer: replaying needs the operator role")


def api_user(request: Request) -> User:
    """Dependency of the API: HTTP Basic with a console user, or a signed-in session."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        name, password = _basic(header[6:])
        user = check_password(request, name, password, remember=True)
        if user is None:
            raise Unauthorized()
        return user
    user = session_user(request)
    if user is None:
        raise Unauthorized()
    return user


def _basic(encoded: str) -> tuple[str, str]:
    try:
        name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode(
            "utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized() from None
    if not sep:
        raise Unauthorized()
    return name, password


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path of ours only (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    return path
