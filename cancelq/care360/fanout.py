"""Many Care360 calls in flight from one worker process, at a low CPU cost each.

`Care360Client` blocks one thread per call: the thread count caps the calls in flight, and
64 threads cost more CPU per call than one loop (figures below). `FanOut` runs ONE asyncio
loop per process, in a daemon thread started on first use (so importing or building it
starts nothing, and a prefork child never inherits a running loop: a fork is noticed by pid
and the child starts its own). The loop owns one `httpx.AsyncClient` over
`httpx_aiohttp.AiohttpTransport`: the only async pool measured cheap (httpx's own async
pool costs 6-7 ms of CPU per call). Callers stay blocking and thread-safe: any Celery
thread hands its calls to the loop and waits for the answers.

What it promises is `Care360Client`'s, by sharing its code (client.py: the request, the
`Answer` parser, the body cap, the one exception table): bodies streamed and capped at
`BODY_LIMIT`, redirects returned and never followed, every failure mapped to one of ours with
no `__context__`/`__cause__` and no key in any text or frame local. Besides:

- at most `max_in_flight` calls per process (CARE360_MAX_IN_FLIGHT), real-time and bulk
  together; a waiting `urgent` call (real time) takes the next free slot before any waiting
  bulk call, so real time never queues behind a bulk backlog;
- in `cancel_many`, each call fails alone: its exception is returned in its place, the
  others' answers are kept; nothing of one call's failure reaches another;
- every call has a total deadline, `CARE360_TIMEOUT_SECONDS`, from the moment it has a
  slot to its last byte read (`asyncio.timeout`): past it the call ends as `Care360Timeout`
  (retryable), however its answer trickles in. httpx's per-phase timeouts, which
  httpx_aiohttp 0.2 turns into aiohttp's (connect -> sock_connect, pool -> connect, read ->
  sock_read between reads; write not applied), stay as well, but alone they let an answer
  dripping a byte every half second run forever. Waiting for a slot is not part of the
  deadline: the call has not started;
- the calling thread never waits forever either: it looks at the loop every
  `WAIT_STEP_SECONDS` and gives up when the loop's thread has died (a new loop is started,
  with one log line, and the calls it held fail as `TransportError`, retryable) or when a
  call has been in flight longer than `stuck_after` (deadline plus `STUCK_MARGIN_SECONDS`:
  a loop that no longer runs its timers; the calls fail as `Care360Timeout`);
- `oldest_call_age` says how long the oldest call in flight has run: the worker's
  heartbeat publishes it, `cancelq health` fails past `stuck_after`, and the lease keeper
  stops renewing past it (cancelq.pipeline.lease), so a stuck job is reaped and retried.

Of `httpx.Limits` the transport uses `max_connections` (aiohttp's connector limit, set to
`max_in_flight`, so a call holding a slot never waits for a connection) and
`keepalive_expiry`. The loop is one thread: measured ~2,000-2,700 calls/s per process
(bench/results-client.txt), CPU per call about 0.36 ms in batches, 0.49 ms one call per
thread, against 0.86 ms for `Care360Client` at 64 threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from cancelq.care360.body import ACCEPT_ENCODING
from cancelq.care360.calls import Timed
from cancelq.care360.client import PATH, Answer, RequestFrame, cancel_request, exchange_async
from cancelq.core.errors import Care360Timeout, TransportError

log = logging.getLogger("cancelq.fanout")

T = TypeVar("T")

#: Seconds `close` waits for the loop to close the client and stop.
CLOSE_TIMEOUT = 10.0
#: Seconds between a calling thread's looks at the loop while it waits for its answers.
WAIT_STEP_SECONDS = 0.5
#: A call in flight this long past its deadline means the loop is stuck (it would have
#: ended the call at the deadline): waits give up, health fails, leases are not renewed.
STUCK_MARGIN_SECONDS = 2.0


class _Slots:
    """At most `size` holders at once; waiting `urgent` callers are served first, each kind
    in arrival order. Touched only from the loop's thread, so it needs no lock.

    A released slot goes straight to the next waiter (it is never "free" in between), so a
    newcomer cannot overtake the queue; a slot is free only when nobody waits.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self.urgent: deque[asyncio.Future[None]] = deque()
        self.bulk: deque[asyncio.Future[None]] = deque()

    async def acquire(self, urgent: bool) -> None:
        if self.free > 0:
            self.free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        (self.urgent if urgent else self.bulk).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # Handed a slot and cancelled before using it: pass the slot on. A waiter
            # cancelled while still queued stays queued, done, and is skipped by `release`.
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        for queue in (self.urgent, self.bulk):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self.free += 1


@dataclass
class _Flights:
    """When each call in flight got its slot; written by the loop, read by any thread."""

    started: dict[int, float] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> int:
        token = next(self.ids)
        with self.lock:
            self.started[token] = time.monotonic()
        return token

    def end(self, token: int) -> None:
        with self.lock:
            self.started.pop(token, None)

    def oldest_age(self) -> float | None:
        with self.lock:
            first = min(self.started.values(), default=None)
        return None if first is None else time.monotonic() - first


@dataclass(frozen=True, slots=True)
class _Loop:
    """What one process's fan-out runs on; `pid` tells a fork's child that it is not its own."""

    pid: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    client: httpx.AsyncClient
    frame: RequestFrame
    slots: _Slots
    flights: _Flights


class FanOut:
    """Blocking, thread-safe Care360 calls run concurrently on one per-process event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout_seconds: float,
        max_in_flight: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_seconds)
        self._deadline = timeout_seconds
        #: a call in flight longer than this is stuck (see the module's docstring)
        self.stuck_after = timeout_seconds + STUCK_MARGIN_SECONDS
        self._max_in_flight = max_in_flight
        self._transport = transport
        self._lock = threading.Lock()
        self._running: _Loop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"FanOut(base_url={self._base_url!r}, max_in_flight={self._max_in_flight})"

    def url_for(self, case_id: str) -> str:
        return self._base_url + PATH.format(case_id=case_id)

    def cancel(self, case_id: str, event_id: str, *, urgent: bool = True) -> Answer:
        """One call, as `Care360Client.cancel`: any HTTP answer is returned, a failed exchange
        raises (Care360Timeout, Care360Unreachable, TransportError)."""
        running = self._loop()
        return self._wait(running, self._call(running, case_id, event_id, urgent))

    def cancel_many(
        self, pairs: Sequence[tuple[str, str]], *, urgent: bool = False
    ) -> list[Timed]:
        """Every (case_id, event_id) call at once (within `max_in_flight`); in input order,
        each call's `Answer` or the exception it failed with (returned, never raised), and
        when it started and how long it took once it had a slot (a `BatchCaller`)."""
        if not pairs:
            return []
        running = self._loop()
        try:
            return self._wait(running, self._many(running, pairs, urgent))
        except TransportError as exc:  # the loop died or is stuck: every call of it failed
            return [Timed(type(exc)(str(exc)), time.time(), 0.0) for _ in pairs]

    def oldest_call_age(self) -> float | None:
        """Seconds the oldest call in flight in this process has run; None when none is."""
        running = self._running
        if running is None or running.pid != os.getpid():
            return None
        return running.flights.oldest_age()

    def stuck(self) -> bool:
        """Whether a call has outlived its deadline by `STUCK_MARGIN_SECONDS`."""
        age = self.oldest_call_age()
        return age is not None and age > self.stuck_after

    def close(self) -> None:
        """Close the client and stop the loop; calls still running end as
        `TransportError` (their waiting threads are told the loop stopped).
        Safe to call twice; the object cannot be used afterwards."""
        with self._lock:
            running, self._running, self._closed = self._running, None, True
        if running is None or running.pid != os.getpid():
            return  # never started, or a fork's parent's loop: not ours to stop
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(running), running.loop).result(
                CLOSE_TIMEOUT
            )
        finally:
            running.loop.call_soon_threadsafe(running.loop.stop)
            running.thread.join(CLOSE_TIMEOUT)
            if not running.thread.is_alive():
                running.loop.close()

    def _wait(self, running: _Loop, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the loop and wait for it, never forever (the module's docstring)."""
        future = asyncio.run_coroutine_threadsafe(work, running.loop)
        while True:
            done, _ = concurrent.futures.wait([future], WAIT_STEP_SECONDS)
            if done:
                if future.cancelled():
                    raise TransportError("no usable answer (the fan-out's loop stopped)")
                return future.result()
            problem = self._trouble(running)
            if problem is not None:
                future.cancel()
                raise problem

    def _trouble(self, running: _Loop) -> TransportError | None:
        """Why a wait on `running` must end now, if it must."""
        if not running.thread.is_alive():
            self._replace_dead(running)
            return TransportError("no usable answer (the fan-out's loop stopped)")
        age = running.flights.oldest_age()
        if age is not None and age > self.stuck_after:
            return Care360Timeout(f"timed out (a call in flight for {age:.0f}s, past its "
                                  f"{self._deadline:g}s deadline: the fan-out's loop is stuck)")
        return None

    def _loop(self) -> _Loop:
        """This process's loop, started on first use (and again in a forked child, or
        after its thread died)."""
        running = self._running
        if running is not None and running.pid == os.getpid() and running.thread.is_alive():
            return running
        with self._lock:
            if self._closed:
                raise RuntimeError("FanOut is closed")
            current = self._running
            if current is None or current.pid != os.getpid():
                current = self._running = self._start()
            elif not current.thread.is_alive():
                current = self._running = self._restart(current)
            return current

    def _replace_dead(self, dead: _Loop) -> None:
        """A waiting thread found `dead`'s thread gone: replace it, unless done already."""
        with self._lock:
            if self._running is dead and not self._closed:
                self._running = self._restart(dead)

    def _restart(self, dead: _Loop) -> _Loop:
        """A new loop for one whose thread died; the dead one's calls are cancelled (their
        callers get `TransportError`) and its client closed, as far as a stopped loop lets."""
        log.error("care360 fan-out: its event loop thread died; started a new one "
                  "(the calls it held are retried)")
        try:
            dead.loop.run_until_complete(_shutdown(dead, CLOSE_TIMEOUT))
        except Exception:  # best effort: the sockets go with the loop
            pass
        finally:
            dead.loop.close()
        return self._start()

    def _start(self) -> _Loop:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="care360-fanout", daemon=True)
        thread.start()
        client = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
        return _Loop(os.getpid(), loop, thread, client, RequestFrame.of(client),
                     _Slots(self._max_in_flight), _Flights())

    async def _open(self) -> httpx.AsyncClient:
        """The client, made inside the loop that will use it (aiohttp binds its pool there)."""
        limits = httpx.Limits(
            max_connections=self._max_in_flight, max_keepalive_connections=self._max_in_flight
        )
        return httpx.AsyncClient(
            base_url=self._base_url,
            headers={"accept-encoding": ACCEPT_ENCODING},
            transport=self._transport or AiohttpTransport(limits=limits),
            timeout=self._timeout,
            follow_redirects=False,
        )

    async def _many(
        self, running: _Loop, pairs: Sequence[tuple[str, str]], urgent: bool
    ) -> list[Timed]:
        calls = (self._timed(running, case_id, event_id, urgent) for case_id, event_id in pairs)
        return list(await asyncio.gather(*calls))

    async def _call(self, running: _Loop, case_id: str, event_id: str, urgent: bool) -> Answer:
        await running.slots.acquire(urgent)
        try:
            return await self._exchange(running, case_id, event_id)
        finally:
            running.slots.release()

    async def _timed(self, running: _Loop, case_id: str, event_id: str, urgent: bool) -> Timed:
        """One call of a batch: its failure is its result, never the batch's."""
        await running.slots.acquire(urgent)
        started_at, t0 = time.time(), time.perf_counter()
        result: Answer | Exception
        try:
            result = await self._exchange(running, case_id, event_id)
        except Exception as exc:  # the BatchCaller contract: returned in its place
            result = exc
        finally:
            running.slots.release()
        return Timed(result, started_at, round((time.perf_counter() - t0) * 1000, 1))

    async def _exchange(self, running: _Loop, case_id: str, event_id: str) -> Answer:
        """One exchange within the call's total deadline; counted in flight while it runs."""
        client, key = running.client, self._api_key
        frame = running.frame
        token = running.flights.begin()
        scope = asyncio.timeout(self._deadline)
        try:
            async with scope:
                return await exchange_async(
                    client, lambda: cancel_request(frame, key, case_id, event_id))
        except TimeoutError:
            if not scope.expired():
                raise  # not the deadline's (nothing of ours raises it): as it came
        finally:
            running.flights.end(token)
        raise Care360Timeout(f"timed out (no answer within the {self._deadline:g}s deadline)")


async def _shutdown(running: _Loop, within: float | None = None) -> None:
    """Cancel the calls still running, then close the client (and aiohttp's pool)."""
    async with asyncio.timeout(within):
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await running.client.aclose()
