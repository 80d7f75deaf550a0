"""The Care360 HTTP client: one call, *Cancel Custom Calendar Event*.

One `httpx.Client` per thread, not one shared: httpcore 1.0's pool scans every connection
under a lock per request, so a shared client serialises a threads-pool worker (measured here:
347 vs 1,047 calls/s at 64 threads, docs/celery-on-redis.md). What it trusts of an answer,
and how much of it:

- the body is streamed raw and decoded by `cancelq.care360.body`: at most `BODY_LIMIT`
  bytes read from the socket and at most `BODY_LIMIT` decoded, chunk by chunk, so a huge,
  endless or compressed-bomb answer costs at most that much memory; stacked or unknown
  `Content-Encoding`s are refused (body.py says what that means for the job); `error` and
  `message` are kept up to `TEXT_LIMIT` characters, the raw body (for the audit) up to
  `RAW_BODY_LIMIT`;
- every call has a total deadline, `CARE360_TIMEOUT_SECONDS` (httpx's timeouts are per
  phase, so an answer dripping a byte at a time met none): here it is checked between the
  body's chunks, so a dripping body ends as `Care360Timeout` (retryable); the header phase
  is bounded by the per-read timeout only. The worker's calls go through the fan-out,
  which enforces the deadline end to end (fanout.py);
- redirects are never followed (a 3xx is a misconfigured base URL or proxy, not an answer);
- every httpx exception, whatever its class, becomes one of ours through one table,
  `FAILURES` (`mapped_error`), raised by `_exchange` (or its async twin `exchange_async`, for
  `cancelq.care360.fanout`) with no `__context__` (httpx's exceptions hold the request, and so
  the `cv-api-key` header), and no frame of its traceback holds the key or the request.

The async twin here (`exchange_async`) exist for `FanOut`, so that both
clients share one request, one parser, one body cap and one exception table.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from cancelq.care360.body import ACCEPT_ENCODING, BODY_LIMIT, Body, aread_body, read_body
from cancelq.core.errors import Care360Timeout, Care360Unreachable, TransportError

__all__ = ["BODY_LIMIT", "Answer", "Care360Client", "RequestFrame", "cancel_request",
           "exchange_async", "mapped_error"]

ACTION = "CANCEL_CALENDAR_EVENT"
PATH = "/api/v1/cases/{case_id}"
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
    def from_response(cls, response: httpx.Response, deadline: float | None = None) -> Answer:
        """From a response, reading at most `BODY_LIMIT` bytes of its body (body.py)."""
        return cls.from_body(response.status_code, response.headers,
                             read_body(response, deadline=deadline))

    @classmethod
    def from_body(cls, status: int, headers: Mapping[str, str], read: Body) -> Answer:
        """A refused body is parsed as no body; the note saying so is its raw body."""
        answer = cls.from_parts(status, headers, read.content)
        note = read.note()
        return answer if note is None else cls(
            answer.status, answer.success, answer.message, answer.error, answer.retry_after,
            note)

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
    deadline = time.monotonic() + _total(client)
    try:
        return _read(client.send(build(), stream=True, follow_redirects=False), deadline)
    except MAPPED as exc:
        mapped = mapped_error(exc)
    except Care360Timeout as exc:  # the deadline, met in the body: raised again from here
        mapped = Care360Timeout(str(exc))
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


def _total(client: httpx.Client) -> float:
    """The call's total deadline: the client's timeout (one number, `CARE360_TIMEOUT_SECONDS`)."""
    return client.timeout.read or client.timeout.connect or float("inf")


def _read(response: httpx.Response, deadline: float) -> Answer:
    try:
        return Answer.from_response(response, deadline)
    finally:
        response.close()


async def _read_async(response: httpx.Response) -> Answer:
    try:
        read = await aread_body(response)
        return Answer.from_body(response.status_code, response.headers, read)
    finally:
        await response.aclose()


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """What every cancel request of one client shares, made once: the URL up to the case
    id, the client's headers and its timeout.

    httpx's `build_request` derives all of it for every call (it merges and parses the base
    URL, checks its host, merges headers and cookies), which is a large share of a bulk
    worker's CPU when profiled (docs/benchmarks.md). The request made from a frame is the one
    `build_request` makes, byte for byte (tests/care360/test_client.py).
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
                headers={"accept-encoding": ACCEPT_ENCODING},
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
            )
            self._local.client = client
            self._local.frame = RequestFrame.of(client)
            with self._lock:
                self._clients.append(client)
        return client
