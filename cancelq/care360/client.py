"""The Care360 HTTP client: one call, *Cancel Custom Calendar Event*.

One `httpx.Client` per thread, not one shared: httpcore 1.0's pool scans every connection
under a lock per request, so a shared client serialises a threads-pool worker (measured here:
347 vs 1,047 calls/s at 64 threads, docs/celery-on-redis.md). What it trusts of an answer,
and how much of it:

- the body is streamed and read up to `BODY_LIMIT` bytes (decoded), never more, so a huge
  or endless answer costs at most that much memory; `error` and `message` are kept up to
  `TEXT_LIMIT` characters, the raw body (for the audit) up to `RAW_BODY_LIMIT`;
- redirects are never followed (a 3xx is a misconfigured base URL or proxy, not an answer);
- every httpx exception, whatever its class, becomes one of ours through one table,
  `FAILURES` (`mapped_error`), raised by `_exchange` (or its async twin `exchange_async`, for
  `cancelq.care360.fanout`) with no `__context__` (httpx's exceptions hold the request, and so
  the `cv-api-key` header), and no frame of its traceback holds the key or the request.

The async twins here (`aread_capped`, `exchange_async`) exist for `FanOut`, so that both
clients share one request, one parser, one body cap and one exception table.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from cancelq.core.errors import Care360Timeout, Care360Unreachable, TransportError

ACTION = "CANCEL_CALENDAR_EVENT"
PATH = "/api/v1/cases/{case_id}"
#: Bytes of an answer ever read: the spec's bodies are under 200 bytes.
BODY_LIMIT = 64 * 1024
#: Characters of `error` / `message` kept (classification, the audit, log lines).
TEXT_LIMIT = 500
#: Characters of the raw body kept for the audit (invalid_request, transient answers).
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
        """From a response, reading at most `BODY_LIMIT` bytes of its body."""
        return cls.from_parts(response.status_code, response.headers,
                              read_capped(response.iter_bytes()))

    @classmethod
    def from_parts(cls, status: int, headers: Mapping[str, str], content: bytes) -> Answer:
        body: Any
        try:
            body = json.loads(content) if content else None
        except ValueError:  # not JSON, not UTF-8, or cut at BODY_LIMIT
            body = None
        if not isinstance(body, dict):
            body = {}
        success = body.get("success")
        data = body.get("data")
        if success is True and not (isinstance(data, dict) and data.get("success") is True):
            success = None  # a 2xx that is not the documented success shape
        return cls(
            status=status,
            success=success if isinstance(success, bool) else None,
            message=_text(body.get("message")),
            error=_text(body.get("error")),
            retry_after=_text(headers.get("retry-after")),
            raw_body=content[: RAW_BODY_LIMIT * 4].decode("utf-8", "replace")[:RAW_BODY_LIMIT],
        )


@dataclass(slots=True)
class _Capped:
    """The body so far, up to `limit` bytes: the one cap, fed by the sync and async readers."""

    limit: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; True once `limit` bytes are in (stop reading)."""
        self.parts.append(chunk)
        self.size += len(chunk)
        return self.size >= self.limit

    def content(self) -> bytes:
        return b"".join(self.parts)[: self.limit]


def read_capped(chunks: Iterable[bytes], limit: int = BODY_LIMIT) -> bytes:
    """The first `limit` bytes of `chunks`; stops reading there."""
    capped = _Capped(limit)
    for chunk in chunks:
        if capped.add(chunk):
            break
    return capped.content()


async def aread_capped(chunks: AsyncIterator[bytes], limit: int = BODY_LIMIT) -> bytes:
    """`read_capped` for an async body; closes the iterator at once when it stops early,
    rather than leaving it to the loop's async-generator finaliser."""
    capped = _Capped(limit)
    try:
        async for chunk in chunks:
            if capped.add(chunk):
                break
    finally:
        aclose: Callable[[], Awaitable[None]] | None = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return capped.content()


def _text(value: object) -> str | None:
    return value[:TEXT_LIMIT] if isinstance(value, str) else None


#: What a failed exchange becomes, first match wins: the one table. httpx's exceptions (both
#: clients), and aiohttp's (FanOut's transport): httpx_aiohttp 0.2 re-raises some of them as
#: the wrong httpx class (a refused connection as `ConnectTimeout`), and lets others through
#: unchanged, so an aiohttp error found as the cause is what is mapped.
FAILURES: tuple[tuple[tuple[type[Exception], ...], type[TransportError], str], ...] = (
    ((httpx.TimeoutException, aiohttp.ServerTimeoutError), Care360Timeout, "timed out"),
    # connect, read/write, protocol, proxy, scheme; aiohttp: refused, reset, disconnected,
    # a malformed answer (ClientResponseError), a cut body (ClientPayloadError)
    ((httpx.TransportError, aiohttp.ClientError), Care360Unreachable, "request failed"),
    # DecodingError (a body that does not decode as its Content-Encoding says),
    # TooManyRedirects and anything httpx adds later: the exchange gave no answer.
    ((httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict),
     TransportError, "no usable answer"),
)
#: Every exception class `FAILURES` maps: what the exchanges catch.
MAPPED: tuple[type[Exception], ...] = tuple(cls for classes, _, _ in FAILURES for cls in classes)


def mapped_error(exc: Exception) -> TransportError:
    """Ours for `exc` (one of `MAPPED`): a fresh exception, named after the foreign class,
    holding nothing of it (its text may quote the request; the request holds the key)."""
    cause = exc.__cause__
    origin = cause if isinstance(cause, aiohttp.ClientError) else exc
    for classes, ours, text in FAILURES:
        if isinstance(origin, classes):
            return ours(f"{text} ({type(origin).__name__})")
    return TransportError(f"no usable answer ({type(origin).__name__})")


def _exchange(client: httpx.Client, build: Callable[[], httpx.Request]) -> Answer:
    """Send the request `build` makes and read its answer: where httpx's exceptions become
    ours (`mapped_error`).

    The mapped error is raised after the `except` block on purpose, so that it has no
    `__context__`; the request is built inside `build` and never bound to a name here, so
    no frame of the mapped error's traceback holds the key.
    """
    mapped: TransportError
    try:
        return _read(client.send(build(), stream=True, follow_redirects=False))
    except MAPPED as exc:
        mapped = mapped_error(exc)
    raise mapped


async def exchange_async(
    client: httpx.AsyncClient, build: Callable[[], httpx.Request]
) -> Answer:
    """`_exchange` for an `httpx.AsyncClient`: the same promises, the same table."""
    mapped: TransportError
    try:
        return await _read_async(await client.send(build(), stream=True, follow_redirects=False))
    except MAPPED as exc:
        mapped = mapped_error(exc)
    raise mapped


def _read(response: httpx.Response) -> Answer:
    try:
        return Answer.from_response(response)
    finally:
        response.close()


async def _read_async(response: httpx.Response) -> Answer:
    try:
        content = await aread_capped(response.aiter_bytes())
        return Answer.from_parts(response.status_code, response.headers, content)
    finally:
        await response.aclose()


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """What every cancel request of one client shares, made once: the URL up to the case
    id, the client's headers and its timeout.

    `build_request` derived all of it again for every call (merging and parsing the base
    URL, checking its host, merging headers and cookies): 18.6% of the bulk worker's CPU
    (py-spy, docs/benchmarks.md). The request made from a frame is the one `build_request`
    makes, byte for byte (tests/care360/test_client.py).
    """

    url_prefix: str
    headers: tuple[tuple[bytes, bytes], ...]
    extensions: dict[str, Any]

    @classmethod
    def of(cls, client: httpx.Client | httpx.AsyncClient) -> RequestFrame:
        probe = client.build_request("POST", PATH.format(case_id="-"))
        return cls(
            url_prefix=str(probe.url)[:-1],
            headers=(*client.headers.raw, (b"content-type", b"application/json")),
            extensions=dict(probe.extensions),
        )


def cancel_request(
    frame: RequestFrame, api_key: SecretStr, case_id: str, event_id: str
) -> httpx.Request:
    """The cancel request; the key is read here only, in a frame that is gone once it returns."""
    return httpx.Request(
        "POST",
        frame.url_prefix + case_id,
        content=json.dumps({"action": ACTION, "calendar": {"id": event_id}},
                           ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(),
        headers=[*frame.headers, (b"cv-api-key", api_key.get_secret_value().encode())],
        extensions=frame.extensions,
    )


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
        key = self._api_key
        frame: RequestFrame = self._local.frame
        return _exchange(client, lambda: cancel_request(frame, key, case_id, event_id))

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
            self._local.frame = RequestFrame.of(client)
            with self._lock:
                self._clients.append(client)
        return client
