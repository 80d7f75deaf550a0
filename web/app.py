"""The console's ASGI application, and `serve` for `cancelq web`.

`create_app` refuses to build without users (WEB_USERS) and a session secret (WEB_SECRET):
there is no anonymous mode and no made-up secret. Errors become one line for the reader: a
page for a person, `{"detail": ...}` for the API; a Redis or archive outage is a 503, never
a traceback. The OpenAPI document is at /api/v1/openapi.json; Swagger UI and ReDoc are off
(they load their scripts from a CDN, which the CSP refuses and offline hosts lack).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from urllib.parse import quote

import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import URLSafeTimedSerializer

from cancelq.core.errors import ArchiveUnavailable, InvalidInput, RedisUnavailable
from cancelq.core.settings import Settings
from cancelq.core.urls import mask_url
from cancelq.ops.lookup import JobNotFound
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import audit_store
from web import api, pages, replay, runs
from web.auth import SESSION_SALT, Forbidden, LoginRequired, Throttled, Unauthorized
from web.console import Console
from web.headers import SecurityHeaders
from web.render import HERE, make_templates, page
from web.throttle import Throttle
from web.users import Verifier, parse_users


def _version() -> str:
    try:
        return version("cancelq")
    except PackageNotFoundError:
        return "0"


def create_app(settings: Settings, reader: ReadThrough | None = None) -> FastAPI:
    """The app; `reader` None: the store from settings, with the archive when configured."""
    users = parse_users(settings.web_users_text())
    secret = settings.require_web_secret().get_secret_value()
    if reader is None:
        from cancelq.archive.archive import open_archive  # SQLAlchemy: only with an archive

        reader = ReadThrough(audit_store(settings), open_archive(settings))
    app = FastAPI(title="cancelq", version=_version(), openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="What became of a cancellation: jobs, runs, dead letters.")
    app.state.console = Console(settings, reader, Verifier(users),
                                URLSafeTimedSerializer(secret, salt=SESSION_SALT),
                                make_templates(), Throttle())
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (pages, replay, runs, api):
        app.include_router(module.router)
    _handle_errors(app)
    return app


def _problem(request: Request, status: int, detail: str) -> Response:
    detail = " ".join(mask_url(detail).split())
    if request.url.path.startswith("/api/"):
        headers = {"www-authenticate": 'Basic realm="cancelq"'} if status == 401 else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    return page(request, "error.html", status, status=status, detail=detail)


def _handle_errors(app: FastAPI) -> None:
    async def login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    async def unauthorized(request: Request, exc: Exception) -> Response:
        return _problem(request, 401, "sign in: HTTP Basic with a console user")

    async def forbidden(request: Request, exc: Exception) -> Response:
        return _problem(request, 403, str(exc))

    async def throttled(request: Request, exc: Exception) -> Response:
        return _problem(request, 429, str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        return _problem(request, 400, f"invalid {exc}")

    async def missing(request: Request, exc: Exception) -> Response:
        return _problem(request, 404, str(exc))

    async def outage(request: Request, exc: Exception) -> Response:
        what = "archive" if isinstance(exc, ArchiveUnavailable) else "Redis"
        return _problem(request, 503, f"{what} unavailable ({type(exc).__name__}): try again")

    app.add_exception_handler(LoginRequired, login)
    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(Throttled, throttled)
    app.add_exception_handler(InvalidInput, invalid)
    app.add_exception_handler(JobNotFound, missing)
    for outage_class in (RedisUnavailable, ArchiveUnavailable, redis.RedisError):
        app.add_exception_handler(outage_class, outage)


def serve(settings: Settings) -> None:
    """Run the console on WEB_ADDRESS until stopped (SIGINT or SIGTERM)."""
    app = create_app(settings)
    host, port = settings.web_host_port
    config = uvicorn.Config(app, host=host, port=port, proxy_headers=True,
                            server_header=False, log_level="info", access_log=True)
    uvicorn.Server(config).run()
