"""What every request of the console reads: the settings, the store (and archive behind it),
the users, the session signer and the templates. One per process, on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.templating import Jinja2Templates
from itsdangerous import URLSafeTimedSerializer

from cancelq.core.settings import Settings
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import AuditStore
from web.throttle import Throttle
from web.users import Verifier


@dataclass(frozen=True, slots=True)
class Console:
    settings: Settings
    reader: ReadThrough
    verifier: Verifier
    signer: URLSafeTimedSerializer
    templates: Jinja2Templates
    throttle: Throttle

    @property
    def store(self) -> AuditStore:
        return self.reader.store


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
