"""The Care360 HTTP client: one call, *Cancel Custom Calendar Event*.

One `httpx.Client` per thread, not one shared: httpcore 1.0's pool scans every connection
under a lock per request, so a shared client serialises a threads-pool worker (measured here:
347 vs 1,047 calls/s at 64 threads, docs/celery-on-redis.md). httpx exceptions are translated to
ours in exactly one place, `_post`, with messages that carry neither
headers nor the key.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from cancelq.core.errors import Care360Timeout, Care360Unreachable, TransportError

ACTION = "CANCEL_CALENDAR_EVENT"
PATH = "/api/v1/cases/{case_id}"
RAW_BODY_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Answer:
    """What Care360 said, reduced to what classification and the audit need."""

    status: int
    success: bool | None
    message: str | None
    error: str | None
    retry_after: str | None
    raw_body: str

    @classmethod
    def from_response(cls, response: httpx.Response) -> Answer:
        raw = response.text[:RAW_BODY_LIMIT]
        body: Any
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        success = body.get("success")
        data = body.get("data")
        if success is True and not (isinstance(data, dict) and data.get("success") is True):
            success = None  # a 2xx that is not the documented success shape
        return cls(
            status=response.status_code,
            success=success if isinstance(success, bool) else None,
            message=_text(body.get("message")),
            error=_text(body.get("error")),
            retry_after=response.headers.get("retry-after"),
            raw_body=raw,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _post(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """The one place httpx's exceptions become ours.

    The mapped error is raised after the `except` blocks on purpose, so that it has no
    `__context__`: httpx's exception holds the request, headers (and so the key) included.
    """
    mapped: TransportError | None = None
    try:
        return client.post(path, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        mapped = Care360Timeout(f"timed out ({type(exc).__name__})")
    except httpx.TransportError as exc:
        mapped = Care360Unreachable(f"request failed ({type(exc).__name__})")
    raise mapped


class Care360Client:
    """Thread-safe client; each thread lazily gets its own connection pool."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_seconds)
        self._transport = transport
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Care360Client(base_url={self._base_url!r})"

    def url_for(self, case_id: str) -> str:
        return self._base_url + PATH.format(case_id=case_id)

    def cancel(self, case_id: str, event_id: str) -> Answer:
        """POST the cancel; any HTTP answer is returned, a failed exchange raises."""
        client = self._client()
        response = _post(
            client,
            PATH.format(case_id=case_id),
            {"action": ACTION, "calendar": {"id": event_id}},
            {"content-type": "application/json", "cv-api-key": self._api_key.get_secret_value()},
        )
        return Answer.from_response(response)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                base_url=self._base_url,
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client
