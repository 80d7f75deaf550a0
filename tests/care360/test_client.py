"""`cancelq.care360.client.Care360Client` against `httpx.MockTransport`: the wire request, error
mapping without leaking the key, and one `httpx.Client` per thread."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from cancelq.care360.client import (
    ACTION,
    PATH,
    RAW_BODY_LIMIT,
    TEXT_LIMIT,
    Answer,
    Care360Client,
    RequestFrame,
    cancel_request,
)
from cancelq.core.errors import Care360Timeout, Care360Unreachable, TransportError
from tests.conftest import API_KEY

BASE = "https://api-staging.care360-next.carevalidate.com"
CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, *, base: str = BASE, timeout: float = 10.0) -> Care360Client:
    return Care360Client(
        base, SecretStr(API_KEY), timeout_seconds=timeout, transport=httpx.MockTransport(handler)
    )


def test_request_is_exactly_the_documented_one() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=OK)

    client = make_client(handler, base=BASE + "/", timeout=7.5)
    client.cancel(CASE, EVENT)
    client.close()

    assert len(seen) == 1
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v1/cases/{CASE}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["cv-api-key"] == API_KEY
    assert json.loads(request.content) == {
        "action": "CANCEL_CALENDAR_EVENT",
        "calendar": {"id": EVENT},
    }
    assert request.extensions["timeout"] == {
        "connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5
    }


def test_url_for() -> None:
    client = make_client(lambda r: httpx.Response(200))
    assert client.url_for(CASE) == f"{BASE}/api/v1/cases/{CASE}"


def test_answer_carries_status_body_and_retry_after() -> None:
    body = b'{"status":503,"success":false,"message":"Busy","error":"try later"}'
    client = make_client(
        lambda r: httpx.Response(503, content=body, headers={"Retry-After": "12"})
    )
    got = client.cancel(CASE, EVENT)
    assert got == Answer(
        status=503, success=False, message="Busy", error="try later", retry_after="12",
        raw_body=body.decode(),
    )


def test_success_answer() -> None:
    got = make_client(lambda r: httpx.Response(200, content=OK)).cancel(CASE, EVENT)
    assert (got.status, got.success, got.message) == (
        200, True, "Calendar event cancelled successfully"
    )


def test_raw_body_is_bounded() -> None:
    got = make_client(lambda r: httpx.Response(502, content=b"x" * 10_000)).cancel(CASE, EVENT)
    assert got.raw_body == "x" * 2000
    assert got.success is None and got.error is None


def test_redirect_is_returned_not_followed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(301, headers={"Location": "https://evil.example/steal"})

    got = make_client(handler).cancel(CASE, EVENT)
    assert got.status == 301
    assert calls == [f"{BASE}/api/v1/cases/{CASE}"]


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@pytest.mark.parametrize(
    ("raised", "mapped"),
    [
        (httpx.ReadTimeout, Care360Timeout),
        (httpx.ConnectTimeout, Care360Timeout),
        (httpx.PoolTimeout, Care360Timeout),
        (httpx.ConnectError, Care360Unreachable),
        (httpx.ReadError, Care360Unreachable),
        (httpx.RemoteProtocolError, Care360Unreachable),
    ],
)
def test_transport_errors_are_mapped_without_the_key(
    raised: type[httpx.TransportError], mapped: type[TransportError],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["cv-api-key"])
        # The worst case: an exception whose text has the key and which holds the request.
        raise raised(f"failed with {request.headers['cv-api-key']}", request=request)

    caplog.set_level(logging.DEBUG)
    client = make_client(handler)
    with pytest.raises(mapped) as info:
        client.cancel(CASE, EVENT)
    assert seen == [API_KEY]  # the key was really sent, and really in the foreign exception
    assert info.value.delay is None
    chain = _exception_chain(info.value)
    assert chain[0] is info.value
    for exc in chain:
        assert API_KEY not in str(exc)
        assert API_KEY not in repr(exc)
        assert API_KEY not in repr(exc.args)
        assert getattr(exc, "request", None) is None  # no request, so no headers
    assert not isinstance(info.value.__cause__, httpx.HTTPError)
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert API_KEY not in caplog.text


def test_client_repr_hides_the_key() -> None:
    client = make_client(lambda r: httpx.Response(200, content=OK))
    client.cancel(CASE, EVENT)
    assert API_KEY not in repr(client)
    assert API_KEY not in str(client)


def test_each_thread_gets_its_own_client() -> None:
    barrier = threading.Barrier(2, timeout=5)
    used: list[int] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=OK)

    client = make_client(handler)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()  # both threads alive at once
            client.cancel(CASE, EVENT)
            first = client._client()
            client.cancel(CASE, EVENT)
            assert client._client() is first  # reused within the thread
            with lock:
                used.append(id(first))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert len(used) == 2
    assert used[0] != used[1]
    pool = list(client._clients)
    assert len(pool) == 2
    assert {id(c) for c in pool} == set(used)
    client.close()
    assert all(c.is_closed for c in pool)
    assert client._clients == []


def test_mapped_transport_error_carries_no_httpx_context() -> None:
    """httpx's exception holds the request (and its cv-api-key header): it must not ride along."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Care360Client(
        "http://care360.test", SecretStr("sk-secret-ctx"), timeout_seconds=1,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(Care360Unreachable) as info:
        client.cancel(str(uuid.uuid4()), str(uuid.uuid4()))
    assert info.value.__context__ is None and info.value.__cause__ is None


def _all_httpx_exceptions() -> list[type[Exception]]:
    """Every exception class httpx defines (its public names), found, not listed by hand."""
    found = []
    for name in dir(httpx):
        value = getattr(httpx, name)
        if isinstance(value, type) and issubclass(value, Exception):
            found.append(value)
    return sorted(found, key=lambda cls: cls.__name__)


def _raise(cls: type[Exception], request: httpx.Request) -> None:
    if issubclass(cls, httpx.HTTPStatusError):
        raise cls("bad", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError):
        raise cls(f"failed for {request.url}", request=request)
    try:
        raise cls(f"failed {request.headers.get('cv-api-key')}")  # worst case: key in text
    except TypeError:  # the StreamError family takes no message
        raise cls() from None


def _frame_locals(exc: BaseException) -> list[object]:
    values: list[object] = []
    tb = exc.__traceback__
    while tb is not None:
        values.extend(tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    return values


def _holds_key(value: object, depth: int = 0) -> bool:
    """The key in `value`, its repr, its headers, or (shallowly) its attributes."""
    if depth > 3:
        return False
    if isinstance(value, httpx.Request):
        return API_KEY in value.headers.get("cv-api-key", "")
    if isinstance(value, httpx.Response):
        return _holds_key(value._request, depth + 1)
    if isinstance(value, SecretStr):
        return False  # masked in every repr; reading it takes an explicit call
    if isinstance(value, dict):
        return any(_holds_key(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_key(v, depth + 1) for v in value)
    try:
        if API_KEY in repr(value):
            return True
    except Exception:
        return False
    closure = getattr(value, "__closure__", None) if callable(value) else None
    return any(_holds_key(cell.cell_contents, depth + 1) for cell in closure or ())


@pytest.mark.parametrize("cls", _all_httpx_exceptions(), ids=lambda c: c.__name__)
def test_every_httpx_exception_is_mapped_with_no_key_anywhere(cls: type[Exception]) -> None:
    """DecodingError, TooManyRedirects, StreamError, InvalidURL...: each becomes one of ours
    (retryable), with no httpx exception as cause or context, and no frame of the traceback
    holding the key (error reporters capture frame locals)."""

    def handler(request: httpx.Request) -> httpx.Response:
        _raise(cls, request)
        raise AssertionError("unreachable")

    with pytest.raises(TransportError) as info:
        make_client(handler).cancel(CASE, EVENT)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)
    assert not any(_holds_key(value) for value in _frame_locals(info.value))


def test_decoding_error_of_a_real_body_is_mapped() -> None:
    """A body that does not decode as its Content-Encoding says raises httpx.DecodingError
    while reading: mapped like any failed exchange."""
    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(TransportError) as info:
        make_client(handler).cancel(CASE, EVENT)
    assert "DecodingError" in str(info.value)
    assert info.value.__context__ is None


def test_body_is_read_only_up_to_the_cap() -> None:
    """A huge answer is streamed and read up to BODY_LIMIT bytes, never whole."""
    pulled: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # 640 MB if read whole
            pulled.append(1)
            yield b"x" * 65_536

    handler = lambda r: httpx.Response(400, content=endless())  # noqa: E731
    got = make_client(handler).cancel(CASE, EVENT)
    assert got.status == 400 and got.error is None
    assert len(pulled) <= 2
    assert len(got.raw_body) == RAW_BODY_LIMIT


def test_error_and_message_are_stored_capped() -> None:
    body = json.dumps({"status": 400, "success": False,
                       "message": "m" * 5_000_000, "error": "e" * 100_000}).encode()
    got = make_client(lambda r: httpx.Response(400, content=body)).cancel(CASE, EVENT)
    # 5 MB of message is over the body cap: not JSON once cut, so nothing is parsed at all
    assert got.message is None and got.error is None
    small = json.dumps({"message": "m" * 20_000, "error": "e" * 20_000}).encode()
    got = make_client(lambda r: httpx.Response(400, content=small)).cancel(CASE, EVENT)
    assert got.message == "m" * TEXT_LIMIT and got.error == "e" * TEXT_LIMIT


@pytest.mark.parametrize("base", ["https://care360.example", "http://127.0.0.1:8360/prefix/"])
def test_the_frame_builds_what_build_request_builds(base: str) -> None:
    """The request from a `RequestFrame` is `build_request`'s, byte for byte: the URL under
    a base path, every header (defaults, content-type, the key), the body, the timeout."""
    for client in (httpx.Client(base_url=base, timeout=7.5),
                   httpx.AsyncClient(base_url=base, timeout=7.5)):
        ours = cancel_request(RequestFrame.of(client), SecretStr(API_KEY), CASE, EVENT)
        ref = client.build_request(
            "POST", PATH.format(case_id=CASE),
            json={"action": ACTION, "calendar": {"id": EVENT}},
            headers={"content-type": "application/json", "cv-api-key": API_KEY},
        )
        assert (ours.method, str(ours.url), ours.content) == (ref.method, str(ref.url),
                                                             ref.content)
        assert ours.headers.multi_items() == ref.headers.multi_items()
        assert ours.extensions == ref.extensions
