"""The simulator as a plain ASGI callable: the Care360 cancel endpoint plus a control API.

No framework: one route to serve fast and a handful of control routes do not need one, and
a bare callable keeps the per-request cost to a dict lookup or two (benchmarks push
thousands of requests a second through one process).

``POST /api/v1/cases/{caseId}`` runs the checks in the order a real deployment would:
injected faults (a gateway answers those first), then API key (401), case (404), action,
``calendar.id``, event existence, ``agentName``, already-cancelled (400s), and finally the
soft delete (200). Bodies are the spec's bytes exactly.

``/_sim/...`` is the control API (no key): health, stats, the call log, reset, faults, events
and scripts. See :mod:`simulator.control` for a client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qs

from simulator.faults import (
    DRIP_SECONDS,
    FaultConfig,
    FaultConfigError,
    ForcedStatus,
    GatewayFault,
    ScriptBook,
    error_message,
    parse_scripted,
    scripted_to_json,
)
from simulator.state import (
    CUSTOM_AGENT,
    DEFAULT_CALL_LOG_LIMIT,
    NIL_CASE,
    Call,
    CallLog,
    SeedError,
    SimState,
    parse_uuid,
)

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

DEFAULT_API_KEY = "sim-key"
API_PREFIX = "/api/v1/cases/"
CONTROL_PREFIX = "/_sim/"
CANCEL_ACTION = "CANCEL_CALENDAR_EVENT"

CLIENT_CLOSED_STATUS = 499
"""Logged (never sent) for a hung request whose client went away: nginx's convention."""

# The documented bodies, byte for byte (spec: "Responses").
BODY_OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)
BODY_INVALID_ACTION = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"Invalid action"}'
)
BODY_INVALID_UUID = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"id must be a valid UUID"}'
)
BODY_EVENT_NOT_FOUND = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"Calendar event not found"}'
)
BODY_ALREADY_CANCELLED = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event has already been cancelled"}'
)
BODY_NOT_CUSTOM = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event can only be cancelled if agentName is \\"custom\\""}'
)
BODY_UNAUTHORIZED = b'{"status":401,"success":false,"message":"Invalid or missing API key"}'
BODY_CASE_NOT_FOUND = (
    b'{"status":404,"success":false,"message":"Invalid request",'
    b'"error":"No Case found for provided details!"}'
)
BODY_INTERNAL_ERROR = b'{"status":500,"success":false,"message":"Internal error"}'
BODY_OK_BAD = b'{"status":200,"success":false}'
"""The ``ok_bad_body`` script: a 200 that is not the documented success."""
BODY_ROUTE_NOT_FOUND = b'{"status":404,"success":false,"message":"Not found"}'


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How one simulator instance behaves; its state is passed separately (:class:`SimState`).

    ``auto_create`` makes any well-formed, never-seen case or event id spring into existence
    (a custom, live event) on first sight, so benchmarks need no seeding. ``random_seed``
    makes fault draws (and ``generate``) reproducible.
    """

    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    auto_create: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    random_seed: int | None = None
    call_log_limit: int = DEFAULT_CALL_LOG_LIMIT


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    applied: bool = False
    fault: str | None = None
    retry_after: int | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: the body never ends: one byte every DRIP_SECONDS (the ``drip`` script)
    drip: bool = False


@dataclass(frozen=True, slots=True)
class _ApiRequest:
    """One call to the Care360 endpoint, as every step of answering it reads it."""

    api_key: bytes | None
    case_id: str | None
    payload: Mapping[str, Any] | None
    event_id: str | None

    @classmethod
    def read(cls, scope: Scope, body: bytes, case_segment: str) -> _ApiRequest:
        """The first `cv-api-key` and `content-type` headers count; ids as the API parses them."""
        api_key: bytes | None = None
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"cv-api-key" and api_key is None:
                api_key = value
            elif name == b"content-type" and not content_type:
                content_type = value
        payload = _parse_payload(body, content_type)
        return cls(api_key, parse_uuid(case_segment), payload, _event_id(payload))


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SimulatorApp:
    """The ASGI application. Attributes are public so in-process tests can inspect them."""

    def __init__(self, config: SimulatorConfig, state: SimState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else SimState()
        self.faults = config.faults
        self.scripts = ScriptBook()
        self.log = CallLog(config.call_log_limit)
        self._api_key = config.api_key.encode()
        self._rng = random.Random(config.random_seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(API_PREFIX) and scope["method"] == "POST":
                case_segment = path[len(API_PREFIX) :]
                if case_segment and "/" not in case_segment:
                    await self._api(scope, receive, send, case_segment)
                    return
            elif path.startswith(CONTROL_PREFIX):
                await self._control(scope, receive, send, path[len(CONTROL_PREFIX) :])
                return
            await _respond(send, 404, BODY_ROUTE_NOT_FOUND)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    # -- the Care360 endpoint -------------------------------------------------------------

    async def _api(self, scope: Scope, receive: Receive, send: Send, case_segment: str) -> None:
        arrived = time.monotonic()
        log = self.log
        # a key probe (every worker sends one at start) is no call in flight: tests wait for
        # "one call in flight" while the probes of the workers they started still hang
        counted = 0 if case_segment == NIL_CASE else 1
        log.in_flight += counted
        try:
            request = _ApiRequest.read(scope, await _read_body(receive), case_segment)
            faults = self.faults
            if faults.latency_ms or faults.latency_jitter_ms:
                await asyncio.sleep(faults.latency_seconds(self._rng.random()))
            event_id = request.event_id
            scripted = self.scripts.pop(event_id) if event_id is not None else None
            answer: _Answer | None
            if scripted is not None:
                answer = await self._scripted(scripted, receive, request)
            else:
                answer = await self._unscripted(receive, request)
            log.record(
                Call(
                    time=arrived,
                    case_id=request.case_id if request.case_id is not None else case_segment,
                    event_id=event_id,
                    status=answer.status if answer else CLIENT_CLOSED_STATUS,
                    fault=answer.fault if answer else GatewayFault.HANG.value,
                    scripted=scripted is not None,
                    applied=answer.applied if answer else False,
                )
            )
            if answer is not None and answer.drip:
                await _drip(send, receive)
            elif answer is not None:
                await _respond(send, answer.status, answer.body, answer.retry_after,
                               answer.headers)
        finally:
            log.in_flight -= counted

    async def _scripted(
        self, scripted: ForcedStatus | str, receive: Receive, request: _ApiRequest
    ) -> _Answer | None:
        if isinstance(scripted, ForcedStatus):
            return _forced(scripted.status, scripted.retry_after, "forced")
        if scripted == "ok_bad_body":
            return _Answer(200, BODY_OK_BAD, fault="bad_body")
        if scripted == "drip":
            return _Answer(200, b"", fault="drip", drip=True)
        if scripted in ("bad_gzip", "deep_json"):
            answer = self._decide(request)
            return _unreadable(answer, scripted)
        if scripted == "hang":
            if await self._hang(receive):
                return None
            answer = self._decide(request)
            return _Answer(answer.status, answer.body, answer.applied, "hang")
        # "lost": whatever happened, the client never hears about it.
        answer = self._decide(request)
        return _Answer(500, BODY_INTERNAL_ERROR, answer.applied, "lost")

    async def _unscripted(self, receive: Receive, request: _ApiRequest) -> _Answer | None:
        faults = self.faults
        fault: str | None = None
        if faults.has_gateway_faults:
            gateway = faults.gateway_fault(self._rng.random())
            if gateway is GatewayFault.ERROR:
                return _Answer(500, BODY_INTERNAL_ERROR, fault=gateway.value)
            if gateway is GatewayFault.THROTTLE:
                return _forced(faults.throttle_status, faults.retry_after, gateway.value)
            if gateway is GatewayFault.HANG:
                if await self._hang(receive):
                    return None
                fault = gateway.value
        answer = self._decide(request)
        if (
            answer.status == 200
            and self.faults.lost_response_rate > 0
            and self._rng.random() < self.faults.lost_response_rate
        ):
            return _Answer(500, BODY_INTERNAL_ERROR, True, "lost")
        if fault is not None:
            return _Answer(answer.status, answer.body, answer.applied, fault)
        return answer

    async def _hang(self, receive: Receive) -> bool:
        """Sleep ``hang_seconds``; True if the client disconnected first (request dropped)."""
        try:
            async with asyncio.timeout(self.faults.hang_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return True
        except TimeoutError:
            return False

    def _decide(self, request: _ApiRequest) -> _Answer:
        """The API's own checks, in order; a success cancels the event (synchronously)."""
        api_key, case_id = request.api_key, request.case_id
        payload, event_id = request.payload, request.event_id
        if api_key is None or not hmac.compare_digest(api_key, self._api_key):
            return _Answer(401, BODY_UNAUTHORIZED)
        state = self.state
        if case_id is None:
            return _Answer(404, BODY_CASE_NOT_FOUND)
        if not state.has_case(case_id):
            if not self.config.auto_create:
                return _Answer(404, BODY_CASE_NOT_FOUND)
            state.add_case(case_id)
        if payload is None or payload.get("action") != CANCEL_ACTION:
            return _Answer(400, BODY_INVALID_ACTION)
        if event_id is None:
            return _Answer(400, BODY_INVALID_UUID)
        event = state.event_in_case(case_id, event_id)
        if event is None:
            if not self.config.auto_create or state.is_known_event(event_id):
                return _Answer(400, BODY_EVENT_NOT_FOUND)
            event = state.upsert_event(case_id, event_id)
        if event.agent_name != CUSTOM_AGENT:
            return _Answer(400, BODY_NOT_CUSTOM)
        if event.is_deleted:
            return _Answer(400, BODY_ALREADY_CANCELLED)
        event.is_deleted = True
        return _Answer(200, BODY_OK, applied=True)

    # -- the control API ------------------------------------------------------------------

    async def _control(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        body = await _read_body(receive)
        try:
            result = self._dispatch(scope["method"], route, body, scope.get("query_string", b""))
        except _ControlError as exc:
            await _respond_json(send, exc.status, {"error": str(exc)})
            return
        await _respond_json(send, 200, result)

    def _dispatch(self, method: str, route: str, body: bytes, query: bytes) -> object:
        if route.startswith("events/") and method == "GET":
            event = self.state.event(route[len("events/") :].lower())
            if event is None:
                raise _ControlError(404, "no such event")
            return event.to_json()
        if route.startswith("script/") and method == "GET":
            pending = self.scripts.pending(route[len("script/") :].lower())
            return [scripted_to_json(r) for r in pending]
        handler = self._routes.get((method, route))
        if handler is None:
            known = {r for _, r in self._routes}
            raise _ControlError(405 if route in known else 404, f"no route {method} /_sim/{route}")
        return handler(self, _json_body(body), query)

    def _health(self, _: object, __: bytes) -> object:
        return {"status": "ok"}

    def _stats(self, _: object, __: bytes) -> object:
        return self.log.stats()

    def _calls(self, _: object, query: bytes) -> object:
        wanted = parse_qs(query.decode("latin-1")).get("event_id")
        event_id = wanted[0].lower() if wanted else None
        return [call.to_json() for call in self.log.calls(event_id)]

    def _reset(self, data: object, _: bytes) -> object:
        """Back to a clean slate: no calls, scripts or faults; state too if asked."""
        clear_state = _field(data, "state", bool, False) if data is not None else False
        self.log.clear()
        self.scripts.clear()
        self.faults = FaultConfig()
        self._rng = random.Random(self.config.random_seed)
        if clear_state:
            self.state.clear()
        return {"reset": True, "state_cleared": clear_state}

    def _get_faults(self, _: object, __: bytes) -> object:
        return self.faults.to_json()

    def _set_faults(self, data: object, _: bytes) -> object:
        if not isinstance(data, Mapping):
            raise _ControlError(400, "body must be a JSON object of fault settings")
        try:
            self.faults = self.faults.updated(data)
        except FaultConfigError as exc:
            raise _ControlError(400, str(exc)) from exc
        return self.faults.to_json()

    def _upsert_events(self, data: object, _: bytes) -> object:
        items = _field(data, "events", list, None)
        specs: list[tuple[str, str, str, bool]] = []
        for item in items:
            if not isinstance(item, Mapping) or not set(item) <= {
                "case_id",
                "event_id",
                "agent_name",
                "cancelled",
            }:
                raise _ControlError(
                    400, "each event needs case_id, event_id, optional agent_name, cancelled"
                )
            case_id, event_id = parse_uuid(item.get("case_id")), parse_uuid(item.get("event_id"))
            if case_id is None or event_id is None:
                raise _ControlError(400, "case_id and event_id must be UUIDs")
            agent_name = _field(item, "agent_name", str, CUSTOM_AGENT)
            cancelled = _field(item, "cancelled", bool, False)
            specs.append((case_id, event_id, agent_name, cancelled))
        for case_id, event_id, agent_name, cancelled in specs:  # all or nothing
            try:
                self.state.upsert_event(
                    case_id, event_id, agent_name=agent_name, is_deleted=cancelled
                )
            except SeedError as exc:  # pragma: no cover - ids were validated above
                raise _ControlError(400, str(exc)) from exc
        return {"upserted": len(specs)}

    def _script(self, data: object, _: bytes) -> object:
        event_id = parse_uuid(_field(data, "event_id", str, None))
        if event_id is None:
            raise _ControlError(400, "event_id must be a UUID")
        raw = _field(data, "responses", list, None)
        try:
            responses = [parse_scripted(item) for item in raw]
        except FaultConfigError as exc:
            raise _ControlError(400, str(exc)) from exc
        return {"event_id": event_id, "queued": self.scripts.push(event_id, responses)}

    def _dump_state(self, _: object, __: bytes) -> object:
        return self.state.to_seed()

    _routes: dict[tuple[str, str], Callable[[SimulatorApp, object, bytes], object]] = {
        ("GET", "health"): _health,
        ("GET", "stats"): _stats,
        ("GET", "calls"): _calls,
        ("POST", "reset"): _reset,
        ("GET", "faults"): _get_faults,
        ("POST", "faults"): _set_faults,
        ("POST", "events"): _upsert_events,
        ("POST", "script"): _script,
        ("GET", "state"): _dump_state,
    }


def create_app(
    config: SimulatorConfig | None = None, *, state: SimState | None = None
) -> SimulatorApp:
    """The ASGI app for ``config`` (defaults: key ``sim-key``, no faults, empty state)."""
    return SimulatorApp(config if config is not None else SimulatorConfig(), state)


# -- helpers ------------------------------------------------------------------------------


DEEP_JSON_DEPTH = 100_000


def _unreadable(answer: _Answer, kind: str) -> _Answer:
    """The API's own answer (applied or not), with a body no client can read."""
    if kind == "bad_gzip":
        return _Answer(answer.status, b"\x1f\x8b this is not gzip", answer.applied, kind,
                       headers=((b"content-encoding", b"gzip"),))
    deep = b"[" * DEEP_JSON_DEPTH + b"]" * DEEP_JSON_DEPTH
    return _Answer(answer.status, deep, answer.applied, kind)


def _forced(status: int, retry_after: int | None, fault: str) -> _Answer:
    body = json.dumps(
        {"status": status, "success": False, "message": error_message(status)},
        separators=(",", ":"),
    ).encode()
    return _Answer(status, body, fault=fault, retry_after=retry_after)


def _parse_payload(body: bytes, content_type: bytes) -> Mapping[str, Any] | None:
    """The JSON object body, or None when the API's body parser would not have produced one."""
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _event_id(payload: Mapping[str, Any] | None) -> str | None:
    if payload is None:
        return None
    calendar = payload.get("calendar")
    return parse_uuid(calendar.get("id")) if isinstance(calendar, dict) else None


def _json_body(body: bytes) -> object:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _ControlError(400, f"body is not JSON: {exc}") from exc


def _field(data: object, name: str, kind: type[Any], default: Any) -> Any:
    """``data[name]`` checked against ``kind``; required when ``default`` is None."""
    if not isinstance(data, Mapping):
        raise _ControlError(400, "body must be a JSON object")
    if name not in data:
        if default is None:
            raise _ControlError(400, f"missing {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _ControlError(400, f"{name!r} must be of type {kind.__name__}")
    return value


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


_JSON = (b"content-type", b"application/json")


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    retry_after: int | None = None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drip(send: Send, receive: Receive) -> None:
    """A 200 whose body never ends: a byte every `DRIP_SECONDS` until the client leaves."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [_JSON, (b"content-length", b"100000000")]})
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        while not gone.done():
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.wait([gone], timeout=DRIP_SECONDS)
    finally:
        gone.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond_json(send: Send, status: int, data: object) -> None:
    await _respond(send, status, json.dumps(data, separators=(",", ":")).encode())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
