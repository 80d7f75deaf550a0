"""`cancelq.care360.fanout.FanOut`: Care360Client's promises kept with many calls in flight.

Unit tests run on `httpx.MockTransport` (async handlers); the rest on a real aiohttp server on
127.0.0.1 (in a thread of this process) through the real `AiohttpTransport`, and one on the
project's simulator. The key checks reuse test_client.py's: the same worst-case exceptions,
the same frame-local search.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from httpx_aiohttp.transport import map_aiohttp_exceptions
from pydantic import SecretStr

from cancelq.care360.calls import Timed
from cancelq.care360.client import BODY_LIMIT, RAW_BODY_LIMIT, Answer
from cancelq.care360.fanout import FanOut, _Slots
from cancelq.core.errors import Care360Timeout, Care360Unreachable, TransportError
from tests.care360.test_client import (
    BASE,
    CASE,
    EVENT,
    OK,
    _all_httpx_exceptions,
    _exception_chain,
    _frame_locals,
    _holds_key,
    _raise,
)
from tests.conftest import API_KEY, Simulator

AsyncHandler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]



def results(timed: list[Timed]) -> list[Answer | Exception]:
    """The results of a batch, without their timings (checked in test_timings_are_per_call)."""
    return [t.result for t in timed]

def ids(n: int) -> list[tuple[str, str]]:
    return [(f"case-{i}", f"event-{i}") for i in range(n)]


@contextmanager
def fan_out(
    handler: AsyncHandler | None = None, *, base: str = BASE, timeout: float = 10.0,
    max_in_flight: int = 256,
) -> Iterator[FanOut]:
    transport = httpx.MockTransport(handler) if handler is not None else None
    fanout = FanOut(base, SecretStr(API_KEY), timeout_seconds=timeout,
                    max_in_flight=max_in_flight, transport=transport)
    try:
        yield fanout
    finally:
        fanout.close()


async def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=OK)


def assert_clean(exc: BaseException) -> None:
    """Ours, alone: no foreign cause or context, no key in its text or any frame local."""
    assert isinstance(exc, TransportError)
    assert exc.__context__ is None and exc.__cause__ is None
    assert _exception_chain(exc) == [exc]
    assert API_KEY not in str(exc) and API_KEY not in repr(exc)
    assert not any(_holds_key(value) for value in _frame_locals(exc))


# -- the request and the answer -------------------------------------------------------------


def test_request_is_exactly_the_documented_one() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=OK)

    with fan_out(handler, base=BASE + "/", timeout=7.5) as fanout:
        got = fanout.cancel(CASE, EVENT)
    assert got.status == 200 and got.success is True
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v1/cases/{CASE}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["cv-api-key"] == API_KEY
    assert json.loads(request.content) == {"action": "CANCEL_CALENDAR_EVENT",
                                           "calendar": {"id": EVENT}}
    assert request.extensions["timeout"] == {
        "connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5
    }


def test_url_for_and_repr_hide_nothing_secret() -> None:
    with fan_out(ok) as fanout:
        fanout.cancel(CASE, EVENT)
        assert fanout.url_for(CASE) == f"{BASE}/api/v1/cases/{CASE}"
        assert API_KEY not in repr(fanout) and API_KEY not in str(fanout)


def test_answer_is_parsed_as_the_sync_client_does() -> None:
    body = b'{"status":503,"success":false,"message":"Busy","error":"try later"}'

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=body, headers={"Retry-After": "12"})

    with fan_out(handler) as fanout:
        assert fanout.cancel(CASE, EVENT) == Answer(
            status=503, success=False, message="Busy", error="try later", retry_after="12",
            raw_body=body.decode(),
        )


def test_results_come_back_in_input_order() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        index = int(request.url.path.rsplit("-", 1)[1])
        await asyncio.sleep((40 - index) / 2000)  # the last sent answers first
        return httpx.Response(400, json={"error": f"e{index}"})

    with fan_out(handler) as fanout:
        got = results(fanout.cancel_many(ids(40)))
    assert [a.error for a in got if isinstance(a, Answer)] == [f"e{i}" for i in range(40)]


def test_empty_batch_starts_nothing() -> None:
    with fan_out(ok) as fanout:
        assert results(fanout.cancel_many([])) == []
        assert fanout._running is None


def test_redirect_is_returned_not_followed() -> None:
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(301, headers={"Location": "https://evil.example/steal"})

    with fan_out(handler) as fanout:
        [got] = results(fanout.cancel_many([(CASE, EVENT)]))
    assert isinstance(got, Answer) and got.status == 301
    assert calls == [f"{BASE}/api/v1/cases/{CASE}"]


def test_body_is_read_only_up_to_the_cap() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # 640 MB if read whole
            pulled.append(1)
            yield b"x" * 65_536

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=endless())

    with fan_out(handler) as fanout:
        got = fanout.cancel(CASE, EVENT)
    assert got.status == 400 and got.error is None
    assert len(pulled) <= 2
    assert len(got.raw_body) == RAW_BODY_LIMIT


# -- failures: mapped like Care360Client's, each alone ---------------------------------------


@pytest.mark.parametrize("cls", _all_httpx_exceptions(), ids=lambda c: c.__name__)
def test_every_httpx_exception_is_mapped_with_no_key_anywhere(
    cls: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def handler(request: httpx.Request) -> httpx.Response:
        _raise(cls, request)
        raise AssertionError("unreachable")

    with fan_out(handler) as fanout:
        with pytest.raises(TransportError) as info:
            fanout.cancel(CASE, EVENT)
        [returned] = results(fanout.cancel_many([(CASE, EVENT)]))
    assert_clean(info.value)
    assert isinstance(returned, Exception)
    assert_clean(returned)
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("raised", "mapped"),
    [
        (aiohttp.ServerDisconnectedError(), Care360Unreachable),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), Care360Unreachable),
        (aiohttp.ClientPayloadError("cut short"), Care360Unreachable),
        (aiohttp.ServerTimeoutError(), Care360Timeout),
        (aiohttp.ConnectionTimeoutError(), Care360Timeout),
        (aiohttp.SocketTimeoutError(), Care360Timeout),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
@pytest.mark.parametrize("wrapped", [True, False], ids=["via-httpx_aiohttp", "raw"])
def test_aiohttp_errors_map_by_what_happened(
    raised: Exception, mapped: type[TransportError], wrapped: bool
) -> None:
    """httpx_aiohttp re-raises a refused or dropped connection as httpx.ConnectTimeout (its
    table matches the base class ClientConnectionError first) and lets some aiohttp errors
    through unmapped: what happened decides, found as the cause."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if wrapped:
            with map_aiohttp_exceptions():  # the library's own wrapping
                raise raised
        raise raised

    with fan_out(handler) as fanout:
        with pytest.raises(TransportError) as info:
            fanout.cancel(CASE, EVENT)
    assert type(info.value) is mapped
    assert type(raised).__name__ in str(info.value)
    assert_clean(info.value)


def test_one_failure_leaves_the_others_alone() -> None:
    """A timeout, a refused connection, a broken gzip body and a plain bug (not a transport
    failure) in one batch: each comes back in its place, the others answer."""
    failures: dict[str, Callable[[httpx.Request], httpx.Response]] = {
        "case-1": lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
        "case-3": lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
        "case-5": lambda r: httpx.Response(200, content=b"not gzip",
                                           headers={"Content-Encoding": "gzip"}),
        "case-7": lambda r: (_ for _ in ()).throw(ValueError("a bug")),
    }

    async def handler(request: httpx.Request) -> httpx.Response:
        case = request.url.path.rsplit("/", 1)[1]
        answer: httpx.Response = failures.get(case, lambda r: httpx.Response(200, content=OK))(
            request
        )
        return answer

    with fan_out(handler) as fanout:
        got = results(fanout.cancel_many(ids(9)))
    kinds = [type(x).__name__ if isinstance(x, Exception) else x.status for x in got]
    assert kinds == [200, "Care360Timeout", 200, "Care360Unreachable", 200, "TransportError",
                     200, "ValueError", 200]
    assert "DecodingError" in str(got[5])
    for index in (1, 3, 5):
        error = got[index]
        assert isinstance(error, Exception)
        assert_clean(error)


def test_a_bug_in_cancel_is_raised_as_itself() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise ValueError("a bug")

    with fan_out(handler) as fanout, pytest.raises(ValueError, match="a bug"):
        fanout.cancel(CASE, EVENT)


# -- the in-flight bound and who goes first ---------------------------------------------------


@dataclass
class Gate:
    """A handler that holds every request until `open`, and records the order they came."""

    opened: threading.Event = field(default_factory=threading.Event)
    order: list[str] = field(default_factory=list)
    now: int = 0
    most: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.order.append(request.url.path.rsplit("/", 1)[1])
        self.now += 1
        self.most = max(self.most, self.now)
        while not self.opened.is_set():
            await asyncio.sleep(0.002)
        self.now -= 1
        return httpx.Response(200, content=OK)


def waiting(fanout: FanOut) -> tuple[int, int]:
    running = fanout._running
    if running is None:
        return (0, 0)
    slots = running.slots
    return (sum(not w.done() for w in slots.urgent), sum(not w.done() for w in slots.bulk))


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


def test_urgent_call_takes_the_next_slot_before_a_bulk_backlog() -> None:
    gate = Gate()
    with fan_out(gate, max_in_flight=2) as fanout:
        bulk = threading.Thread(target=fanout.cancel_many, args=(ids(6),))
        bulk.start()
        wait_until(lambda: waiting(fanout) == (0, 4))  # 2 running, 4 queued
        urgent = threading.Thread(target=fanout.cancel, args=("urgent", "e"))
        urgent.start()
        wait_until(lambda: waiting(fanout) == (1, 4))
        late = threading.Thread(target=fanout.cancel, args=("late-bulk", "e"),
                                kwargs={"urgent": False})
        late.start()
        wait_until(lambda: waiting(fanout) == (1, 5))
        assert gate.order == ["case-0", "case-1"]
        gate.opened.set()
        for thread in (bulk, urgent, late):
            thread.join(10)
    assert gate.order == ["case-0", "case-1", "urgent", "case-2", "case-3", "case-4",
                          "case-5", "late-bulk"]
    assert gate.most == 2


def test_in_flight_is_bounded_across_threads() -> None:
    gate = Gate()
    with fan_out(gate, max_in_flight=7) as fanout:
        threads = [threading.Thread(target=fanout.cancel_many, args=(ids(10),))
                   for _ in range(4)]
        threads += [threading.Thread(target=fanout.cancel, args=(f"rt-{i}", "e"))
                    for i in range(5)]
        for thread in threads:
            thread.start()
        wait_until(lambda: sum(waiting(fanout)) == 45 - 7)
        assert gate.now == 7
        gate.opened.set()
        for thread in threads:
            thread.join(10)
        assert fanout._running is not None and fanout._running.slots.free == 7
    assert gate.most == 7 and len(gate.order) == 45


def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    async def scenario() -> list[str]:
        slots, got = _Slots(1), []
        await slots.acquire(urgent=False)

        async def take(name: str) -> None:
            await slots.acquire(urgent=False)
            got.append(name)

        first = asyncio.create_task(take("first"))
        second = asyncio.create_task(take("second"))
        await asyncio.sleep(0)
        slots.release()  # handed to first...
        first.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(first, second, return_exceptions=True)
        assert slots.free == 0 and not slots.bulk
        return got

    assert asyncio.run(scenario()) == ["second"]


# -- the loop: lazy, one per process, closed once --------------------------------------------


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "care360-fanout"]


def test_building_starts_nothing_and_close_stops_the_loop() -> None:
    before = loop_threads()
    fanout = FanOut(BASE, SecretStr(API_KEY), timeout_seconds=1, max_in_flight=8,
                    transport=httpx.MockTransport(ok))
    assert loop_threads() == before and fanout._running is None
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(fanout.cancel(CASE, EVENT).status))
               for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200] * 32
    assert len(loop_threads()) == len(before) + 1
    running = fanout._running
    assert running is not None
    fanout.close()
    fanout.close()
    assert not running.thread.is_alive() and running.client.is_closed
    assert loop_threads() == before
    with pytest.raises(RuntimeError, match="closed"):
        fanout.cancel(CASE, EVENT)


def test_a_forked_child_runs_its_own_loop() -> None:
    with fan_out(ok) as fanout:
        fanout.cancel(CASE, EVENT)  # the parent's loop is running
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            try:
                code = 0 if fanout.cancel(CASE, EVENT).status == 200 else 1
                fanout.close()
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert fanout.cancel(CASE, EVENT).status == 200  # the parent's is untouched


# -- against a real HTTP server ---------------------------------------------------------------


@dataclass
class Server:
    """Counts what the real server saw: requests by path, and the most at once."""

    url: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    now: int = 0
    most: int = 0
    endless_ended: threading.Event = field(default_factory=threading.Event)


def make_app(server: Server) -> web.Application:
    async def cancel(request: web.Request) -> web.StreamResponse:
        case = request.match_info["case_id"]
        server.hits[case] = server.hits.get(case, 0) + 1
        server.now += 1
        server.most = max(server.most, server.now)
        try:
            return await answer(request, case)
        finally:
            server.now -= 1

    async def answer(request: web.Request, case: str) -> web.StreamResponse:
        await request.read()
        if case.startswith("sleep-"):
            await asyncio.sleep(float(case.split("-")[1]))
        if case == "redirect":
            raise web.HTTPFound(server.url + "/api/v1/cases/elsewhere")
        if case == "drop":
            assert request.transport is not None
            request.transport.close()
        if case == "endless":
            return await endless(request)
        if case in ("gzip", "broken-gzip"):
            body = gzip.compress(OK) if case == "gzip" else b"not gzip at all"
            return web.Response(status=200, body=body, headers={"Content-Encoding": "gzip"})
        return web.Response(status=200, body=OK, content_type="application/json")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65_536)
        finally:
            server.endless_ended.set()

    app = web.Application()
    app.router.add_post("/api/v1/cases/{case_id}", cancel)
    return app


@pytest.fixture
def server() -> Iterator[Server]:
    """The app on 127.0.0.1, its own loop in a thread of this process."""
    state = Server()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = web.AppRunner(make_app(state), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield state
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def real(url: str, *, timeout: float = 10.0, max_in_flight: int = 256) -> FanOut:
    return FanOut(url, SecretStr(API_KEY), timeout_seconds=timeout, max_in_flight=max_in_flight)


def test_timings_are_per_call(server: Server) -> None:
    """Each call's own start and duration, from the moment it had a slot, for its attempt."""
    fanout = real(server.url, max_in_flight=1)
    try:
        before = time.time()
        timed = fanout.cancel_many([("sleep-0.2", "1"), ("ok", "2")])
    finally:
        fanout.close()
    slow, fast = timed
    assert slow.duration_ms >= 190 and fast.duration_ms < slow.duration_ms
    # one slot: the second call started only when the first had ended
    assert before <= slow.started_at and fast.started_at >= slow.started_at + 0.19


def test_real_calls_really_overlap(server: Server) -> None:
    fanout = real(server.url)
    try:
        fanout.cancel("warm-up", "e")
        started = time.perf_counter()
        got = results(fanout.cancel_many([("sleep-0.2", str(i)) for i in range(50)]))
        elapsed = time.perf_counter() - started
    finally:
        fanout.close()
    assert [a.status for a in got if isinstance(a, Answer)] == [200] * 50
    assert elapsed < 50 * 0.2 / 5  # one at a time would take 10 s
    assert server.most >= 25


def test_real_in_flight_cap_is_respected(server: Server) -> None:
    fanout = real(server.url, max_in_flight=5)
    try:
        batches = [threading.Thread(target=fanout.cancel_many,
                                    args=([("sleep-0.05", str(i)) for i in range(20)],))
                   for _ in range(3)]
        for thread in batches:
            thread.start()
        assert fanout.cancel("sleep-0.05", "rt").status == 200
        for thread in batches:
            thread.join(30)
    finally:
        fanout.close()
    assert server.hits["sleep-0.05"] == 61
    assert server.most == 5


def test_real_failures_map_and_stay_in_their_place(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fanout = real(server.url, timeout=0.5)
    try:
        got = results(fanout.cancel_many(
            [("ok", "1"), ("sleep-3", "2"), ("drop", "3"), ("ok", "4")]))
        with pytest.raises(Care360Timeout) as timeout:
            fanout.cancel("sleep-3", "5")
    finally:
        fanout.close()
    kinds = [type(x).__name__ if isinstance(x, Exception) else x.status for x in got]
    assert kinds == [200, "Care360Timeout", "Care360Unreachable", 200]
    for error in (got[1], got[2], timeout.value):
        assert isinstance(error, Exception)
        assert_clean(error)
    assert API_KEY not in caplog.text


def test_real_refused_connection_is_unreachable_not_a_timeout() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    fanout = real(f"http://127.0.0.1:{port}", timeout=5)
    try:
        with pytest.raises(Care360Unreachable) as info:
            fanout.cancel(CASE, EVENT)
        [returned] = results(fanout.cancel_many([(CASE, EVENT)]))
    finally:
        fanout.close()
    assert "ClientConnectorError" in str(info.value)
    assert_clean(info.value)
    assert isinstance(returned, Care360Unreachable)


def test_real_endless_body_is_cut_at_the_cap(server: Server) -> None:
    fanout = real(server.url, timeout=5)
    try:
        got = fanout.cancel("endless", "e")
        assert fanout.cancel("ok", "after").status == 200  # the pool still works
    finally:
        fanout.close()
    assert got.status == 200 and len(got.raw_body) == RAW_BODY_LIMIT
    assert set(got.raw_body) == {"x"} and BODY_LIMIT > RAW_BODY_LIMIT
    assert server.endless_ended.wait(10)  # the connection was dropped, not drained


def test_real_redirect_is_not_followed(server: Server) -> None:
    fanout = real(server.url)
    try:
        [got] = results(fanout.cancel_many([("redirect", "e")]))
    finally:
        fanout.close()
    assert isinstance(got, Answer) and got.status == 302
    assert server.hits == {"redirect": 1}


def test_real_gzip_body_is_decoded_and_a_broken_one_mapped(server: Server) -> None:
    """aiohttp is told not to decompress; httpx does, as for the sync client."""
    fanout = real(server.url)
    try:
        good, broken = results(fanout.cancel_many([("gzip", "1"), ("broken-gzip", "2")]))
    finally:
        fanout.close()
    assert isinstance(good, Answer) and good.success is True
    assert isinstance(broken, TransportError) and "DecodingError" in str(broken)
    assert_clean(broken)


@pytest.mark.integration
def test_against_the_simulator(simulator: Simulator) -> None:
    case = str(uuid.uuid4())
    good, flaky, unknown = (str(uuid.uuid4()) for _ in range(3))
    simulator.control.add_event(case, good)
    simulator.control.add_event(case, flaky)
    simulator.control.script(flaky, [503])
    fanout = real(simulator.url)
    try:
        got = results(fanout.cancel_many([(case, good), (case, flaky), (case, unknown)]))
        again = fanout.cancel(case, good)
    finally:
        fanout.close()
    assert [a.status for a in got if isinstance(a, Answer)] == [200, 503, 400]
    assert isinstance(got[2], Answer) and got[2].error == "Calendar event not found"
    assert again.error == "Calendar event has already been cancelled"
