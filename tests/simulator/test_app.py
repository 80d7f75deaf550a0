"""The simulator's ASGI app, driven in-process through httpx's ASGITransport.

Expected bodies are written out here byte for byte from the spec rather than imported from
the app, so a typo in the app's constants fails a test instead of hiding in both places.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from simulator import (
    FaultConfig,
    FaultConfigError,
    SeedError,
    SimState,
    SimulatorApp,
    SimulatorConfig,
    create_app,
)
from simulator.faults import GatewayFault, parse_scripted

T = TypeVar("T")

KEY = "test-key-5f1c"
CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
OTHER_CASE = "11111111-2222-3333-4444-555555555555"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
EVENT_2 = "987fcdeb-51a2-43d7-9876-543210fedcbb"
NOT_CUSTOM = "00000000-0000-4000-8000-000000000001"
DONE = "00000000-0000-4000-8000-000000000002"
NOT_CUSTOM_DONE = "00000000-0000-4000-8000-000000000003"
ELSEWHERE = "00000000-0000-4000-8000-000000000004"
UNKNOWN = "00000000-0000-4000-8000-0000000000ff"

OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)
INVALID_ACTION = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"Invalid action"}'
)
INVALID_UUID = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"id must be a valid UUID"}'
)
NOT_FOUND = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"Calendar event not found"}'
)
ALREADY = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event has already been cancelled"}'
)
NOT_CUSTOM_BODY = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event can only be cancelled if agentName is \\"custom\\""}'
)
UNAUTHORIZED = b'{"status":401,"success":false,"message":"Invalid or missing API key"}'
CASE_NOT_FOUND = (
    b'{"status":404,"success":false,"message":"Invalid request",'
    b'"error":"No Case found for provided details!"}'
)
INTERNAL = b'{"status":500,"success":false,"message":"Internal error"}'


def seeded_state() -> SimState:
    state = SimState()
    state.upsert_event(CASE, EVENT)
    state.upsert_event(CASE, EVENT_2)
    state.upsert_event(CASE, NOT_CUSTOM, agent_name="zoom")
    state.upsert_event(CASE, DONE, is_deleted=True)
    state.upsert_event(CASE, NOT_CUSTOM_DONE, agent_name="zoom", is_deleted=True)
    state.upsert_event(OTHER_CASE, ELSEWHERE)
    return state


def make_app(*, faults: FaultConfig | None = None, **config: Any) -> SimulatorApp:
    return create_app(
        SimulatorConfig(api_key=KEY, faults=faults or FaultConfig(), **config),
        state=seeded_state(),
    )


def drive(app: SimulatorApp, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return await scenario(client)

    return asyncio.run(main())


def cancel_body(event_id: object = EVENT, action: object = "CANCEL_CALENDAR_EVENT") -> bytes:
    return json.dumps({"action": action, "calendar": {"id": event_id}}).encode()


async def cancel_async(
    client: httpx.AsyncClient,
    case_id: str = CASE,
    event_id: object = EVENT,
    *,
    key: str | None = KEY,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"content-type": content_type}
    if key is not None:
        headers["cv-api-key"] = key
    content = body if body is not None else cancel_body(event_id)
    return await client.post(f"/api/v1/cases/{case_id}", content=content, headers=headers)


def cancel(
    app: SimulatorApp, case_id: str = CASE, event_id: object = EVENT, **kw: Any
) -> httpx.Response:
    return drive(app, lambda client: cancel_async(client, case_id, event_id, **kw))


def control(app: SimulatorApp, method: str, path: str, payload: object = None) -> httpx.Response:
    async def go(client: httpx.AsyncClient) -> httpx.Response:
        if payload is None:
            return await client.request(method, f"/_sim/{path}")
        return await client.request(method, f"/_sim/{path}", json=payload)

    return drive(app, go)


def cancelled(app: SimulatorApp, event_id: str) -> bool:
    event = app.state.event(event_id)
    assert event is not None
    return event.is_deleted


# -- documented responses -------------------------------------------------------------------


def test_cancel_succeeds_once_then_reports_already_cancelled() -> None:
    app = make_app()
    first = cancel(app)
    assert (first.status_code, first.content) == (200, OK)
    assert first.headers["content-type"] == "application/json"
    assert cancelled(app, EVENT)
    assert not cancelled(app, EVENT_2)

    second = cancel(app)
    assert (second.status_code, second.content) == (400, ALREADY)
    assert second.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("case_id", "kw", "status", "body"),
    [
        pytest.param(CASE, {"key": None}, 401, UNAUTHORIZED, id="missing-key"),
        pytest.param(CASE, {"key": "wrong"}, 401, UNAUTHORIZED, id="wrong-key"),
        pytest.param(CASE, {"key": ""}, 401, UNAUTHORIZED, id="empty-key"),
        pytest.param(UNKNOWN, {}, 404, CASE_NOT_FOUND, id="unknown-case"),
        pytest.param("not-a-uuid", {}, 404, CASE_NOT_FOUND, id="case-not-uuid"),
        pytest.param(CASE, {"body": b"{nope"}, 400, INVALID_ACTION, id="body-not-json"),
        pytest.param(CASE, {"body": b""}, 400, INVALID_ACTION, id="empty-body"),
        pytest.param(CASE, {"body": b"[1]"}, 400, INVALID_ACTION, id="body-not-object"),
        pytest.param(
            CASE, {"body": cancel_body(action="DELETE")}, 400, INVALID_ACTION, id="wrong-action"
        ),
        pytest.param(
            CASE,
            {"body": b'{"calendar":{"id":"' + EVENT.encode() + b'"}}'},
            400,
            INVALID_ACTION,
            id="no-action",
        ),
        pytest.param(
            CASE, {"content_type": "text/plain"}, 400, INVALID_ACTION, id="not-json-content-type"
        ),
        pytest.param(
            CASE,
            {"body": b'{"action":"CANCEL_CALENDAR_EVENT"}'},
            400,
            INVALID_UUID,
            id="no-calendar",
        ),
        pytest.param(
            CASE,
            {"body": b'{"action":"CANCEL_CALENDAR_EVENT","calendar":{}}'},
            400,
            INVALID_UUID,
            id="no-calendar-id",
        ),
        pytest.param(
            CASE,
            {"body": b'{"action":"CANCEL_CALENDAR_EVENT","calendar":"x"}'},
            400,
            INVALID_UUID,
            id="calendar-not-object",
        ),
        pytest.param(CASE, {"body": cancel_body("1234")}, 400, INVALID_UUID, id="id-not-uuid"),
        pytest.param(CASE, {"body": cancel_body(42)}, 400, INVALID_UUID, id="id-not-string"),
        pytest.param(
            CASE, {"body": cancel_body("{" + EVENT + "}")}, 400, INVALID_UUID, id="id-braces"
        ),
        pytest.param(
            CASE, {"body": cancel_body(EVENT.replace("-", ""))}, 400, INVALID_UUID, id="id-hex"
        ),
        pytest.param(CASE, {"body": cancel_body(UNKNOWN)}, 400, NOT_FOUND, id="unknown-event"),
        pytest.param(
            CASE, {"body": cancel_body(ELSEWHERE)}, 400, NOT_FOUND, id="event-of-other-case"
        ),
        pytest.param(CASE, {"body": cancel_body(NOT_CUSTOM)}, 400, NOT_CUSTOM_BODY, id="agent"),
        pytest.param(CASE, {"body": cancel_body(DONE)}, 400, ALREADY, id="already-cancelled"),
    ],
)
def test_documented_errors(case_id: str, kw: dict[str, Any], status: int, body: bytes) -> None:
    app = make_app()
    before = {e.id: e.is_deleted for e in app.state.events()}
    response = cancel(app, case_id, **kw)
    assert (response.status_code, response.content) == (status, body)
    assert response.headers["content-type"] == "application/json"
    assert {e.id: e.is_deleted for e in app.state.events()} == before


@pytest.mark.parametrize(
    ("case_id", "kw", "body"),
    [
        # Each request fails two checks; the earlier check must win.
        pytest.param(UNKNOWN, {"key": "wrong"}, UNAUTHORIZED, id="key-before-case"),
        pytest.param("not-a-uuid", {"key": None}, UNAUTHORIZED, id="key-before-case-id"),
        pytest.param(
            UNKNOWN, {"body": cancel_body(action="NOPE")}, CASE_NOT_FOUND, id="case-before-action"
        ),
        pytest.param(
            CASE, {"body": cancel_body("bad", action="NOPE")}, INVALID_ACTION, id="action-first"
        ),
        pytest.param(
            OTHER_CASE, {"body": cancel_body(NOT_CUSTOM)}, NOT_FOUND, id="found-before-agent"
        ),
        pytest.param(
            CASE, {"body": cancel_body(NOT_CUSTOM_DONE)}, NOT_CUSTOM_BODY, id="agent-before-done"
        ),
    ],
)
def test_check_order(case_id: str, kw: dict[str, Any], body: bytes) -> None:
    assert cancel(make_app(), case_id, **kw).content == body


def test_upper_case_ids_and_json_charset_are_accepted() -> None:
    app = make_app()
    response = cancel(
        app, CASE.upper(), EVENT.upper(), content_type="application/json; charset=utf-8"
    )
    assert (response.status_code, response.content) == (200, OK)
    assert cancelled(app, EVENT)


def test_unknown_routes_are_404_and_not_counted() -> None:
    app = make_app()

    async def go(client: httpx.AsyncClient) -> list[int]:
        return [
            (await client.post("/api/v1/cases/")).status_code,
            (await client.post(f"/api/v1/cases/{CASE}/x")).status_code,
            (await client.get(f"/api/v1/cases/{CASE}")).status_code,
            (await client.post("/elsewhere")).status_code,
        ]

    assert drive(app, go) == [404, 404, 404, 404]
    assert app.log.total == 0


def test_concurrent_cancels_of_one_event_succeed_exactly_once() -> None:
    app = make_app(faults=FaultConfig(latency_ms=5, latency_jitter_ms=5))

    async def go(client: httpx.AsyncClient) -> list[int]:
        responses = await asyncio.gather(*(cancel_async(client) for _ in range(40)))
        return [r.status_code for r in responses]

    statuses = drive(app, go)
    assert statuses.count(200) == 1
    assert statuses.count(400) == 39


# -- auto-create ----------------------------------------------------------------------------


def test_auto_create_makes_unknown_ids_cancellable_once() -> None:
    app = make_app(auto_create=True)
    new_case, new_event = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-0000"
    new_event += "00000001"
    first = cancel(app, new_case, new_event)
    assert (first.status_code, first.content) == (200, OK)
    event = app.state.event(new_event)
    assert event is not None and event.case_id == new_case and event.agent_name == "custom"
    assert cancel(app, new_case, new_event).content == ALREADY


def test_auto_create_still_validates_and_never_moves_events() -> None:
    app = make_app(auto_create=True)
    assert cancel(app, "not-a-uuid").content == CASE_NOT_FOUND
    assert cancel(app, CASE, "nope").content == INVALID_UUID
    assert cancel(app, CASE, ELSEWHERE).content == NOT_FOUND
    elsewhere = app.state.event(ELSEWHERE)
    assert elsewhere is not None and elsewhere.case_id == OTHER_CASE
    assert cancel(app, CASE, NOT_CUSTOM).content == NOT_CUSTOM_BODY
    assert cancel(app, key="wrong").content == UNAUTHORIZED


def test_without_auto_create_unknown_ids_stay_unknown() -> None:
    app = make_app()
    assert cancel(app, UNKNOWN).content == CASE_NOT_FOUND
    assert not app.state.has_case(UNKNOWN)


# -- global faults --------------------------------------------------------------------------


def test_error_rate_answers_500_before_any_check_and_applies_nothing() -> None:
    app = make_app(faults=FaultConfig(error_rate=1.0))
    response = cancel(app, key="wrong")
    assert (response.status_code, response.content) == (500, INTERNAL)
    assert (cancel(app).status_code, cancelled(app, EVENT)) == (500, False)
    assert [c.fault for c in app.log.calls()] == ["error", "error"]


@pytest.mark.parametrize(
    ("status", "message"), [(429, "Too Many Requests"), (503, "Service Unavailable")]
)
def test_throttle_sends_status_and_retry_after(status: int, message: str) -> None:
    app = make_app(faults=FaultConfig(throttle_rate=1.0, throttle_status=status, retry_after=7))
    response = cancel(app)
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"status": status, "success": False, "message": message}
    assert not cancelled(app, EVENT)


def test_throttle_without_retry_after_sends_no_header() -> None:
    response = cancel(make_app(faults=FaultConfig(throttle_rate=1.0)))
    assert response.status_code == 429
    assert "retry-after" not in response.headers


def test_lost_response_applies_the_cancel_but_answers_500() -> None:
    app = make_app(faults=FaultConfig(lost_response_rate=1.0))
    response = cancel(app)
    assert (response.status_code, response.content) == (500, INTERNAL)
    assert cancelled(app, EVENT)
    # Only would-be 200s are lost: the retry sees the documented "already cancelled".
    assert cancel(app).content == ALREADY
    assert [(c.status, c.fault, c.applied) for c in app.log.calls()] == [
        (500, "lost", True),
        (400, None, False),
    ]


def test_hang_delays_then_answers_normally() -> None:
    app = make_app(faults=FaultConfig(hang_rate=1.0, hang_seconds=0.2))
    started = time.monotonic()
    response = cancel(app)
    assert time.monotonic() - started >= 0.2
    assert (response.status_code, response.content) == (200, OK)
    assert app.log.calls()[0].fault == "hang"


def test_latency_is_added_to_every_api_call() -> None:
    app = make_app(faults=FaultConfig(latency_ms=150))
    started = time.monotonic()
    assert cancel(app).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_fault_rates_are_fractions_and_reproducible_with_a_seed() -> None:
    def run() -> list[int]:
        app = make_app(
            faults=FaultConfig(error_rate=0.3, throttle_rate=0.2), random_seed=42, auto_create=True
        )

        async def go(client: httpx.AsyncClient) -> list[int]:
            return [(await cancel_async(client, CASE, EVENT)).status_code for _ in range(500)]

        return drive(app, go)

    statuses = run()
    assert 120 <= statuses.count(500) <= 180
    assert 70 <= statuses.count(429) <= 130
    assert statuses.count(200) == 1  # the first unfaulted call cancels, the rest are 400
    assert statuses == run()


def test_gateway_fault_partition() -> None:
    config = FaultConfig(hang_rate=0.25, error_rate=0.25, throttle_rate=0.25)
    assert config.gateway_fault(0.0) is GatewayFault.HANG
    assert config.gateway_fault(0.2499) is GatewayFault.HANG
    assert config.gateway_fault(0.25) is GatewayFault.ERROR
    assert config.gateway_fault(0.4999) is GatewayFault.ERROR
    assert config.gateway_fault(0.5) is GatewayFault.THROTTLE
    assert config.gateway_fault(0.75) is None
    assert FaultConfig().gateway_fault(0.0) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_rate": 0.6, "hang_rate": 0.5},
        {"throttle_status": 500},
        {"retry_after": -1},
        {"retry_after": 1.5},
        {"latency_ms": -1},
        {"error_rate": True},
        {"error_rate": "0.1"},
        {"no_such_setting": 1},
    ],
)
def test_bad_fault_settings_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(FaultConfigError):
        FaultConfig().updated(changes)
    app = make_app()
    response = control(app, "POST", "faults", changes)
    assert response.status_code == 400
    assert app.faults == FaultConfig()


# -- scripted responses ---------------------------------------------------------------------


def test_scripted_statuses_pop_in_order_then_normal_logic_resumes() -> None:
    app = make_app()
    script = [500, {"status": 429, "retry_after": 2}, 503, 502, 504, 408]
    assert control(app, "POST", "script", {"event_id": EVENT, "responses": script}).json() == {
        "event_id": EVENT,
        "queued": 6,
    }
    assert control(app, "GET", f"script/{EVENT}").json() == script
    responses = [cancel(app) for _ in range(7)]
    assert [r.status_code for r in responses] == [500, 429, 503, 502, 504, 408, 200]
    assert responses[0].content == INTERNAL
    assert responses[1].headers["retry-after"] == "2"
    assert "retry-after" not in responses[2].headers
    assert responses[3].json() == {"status": 502, "success": False, "message": "Bad Gateway"}
    assert responses[6].content == OK
    assert [c.scripted for c in app.log.calls()] == [True] * 6 + [False]


def test_script_is_per_event_and_applies_before_the_key_check() -> None:
    app = make_app()
    control(app, "POST", "script", {"event_id": EVENT, "responses": [503]})
    assert cancel(app, event_id=EVENT_2).status_code == 200
    assert cancel(app, key="wrong").status_code == 503
    assert cancel(app, key="wrong").status_code == 401


def test_scripted_lost_applies_and_ok_bad_body_does_not() -> None:
    app = make_app()
    control(app, "POST", "script", {"event_id": EVENT, "responses": ["ok_bad_body", "lost"]})
    bad = cancel(app)
    assert (bad.status_code, bad.json()) == (200, {"status": 200, "success": False})
    assert not cancelled(app, EVENT)
    lost = cancel(app)
    assert (lost.status_code, lost.content) == (500, INTERNAL)
    assert cancelled(app, EVENT)
    assert cancel(app).content == ALREADY


def test_scripted_unreadable_bodies_apply_the_cancel_and_cannot_be_read() -> None:
    app = make_app()
    control(app, "POST", "script", {"event_id": EVENT, "responses": ["bad_gzip"]})
    control(app, "POST", "script", {"event_id": EVENT_2, "responses": ["deep_json"]})
    with pytest.raises(httpx.DecodingError):
        cancel(app)
    assert cancelled(app, EVENT)
    deep = cancel(app, event_id=EVENT_2)
    assert deep.status_code == 200 and cancelled(app, EVENT_2)
    with pytest.raises(RecursionError):
        json.loads(deep.content)
    assert [c.fault for c in app.log.calls()] == ["bad_gzip", "deep_json"]
    assert cancel(app).content == ALREADY


def test_scripted_hang_sleeps_then_answers() -> None:
    app = make_app(faults=FaultConfig(hang_seconds=0.2))
    control(app, "POST", "script", {"event_id": EVENT, "responses": ["hang"]})
    started = time.monotonic()
    assert cancel(app).content == OK
    assert time.monotonic() - started >= 0.2


def test_script_wins_over_global_faults() -> None:
    app = make_app(faults=FaultConfig(error_rate=1.0))
    control(app, "POST", "script", {"event_id": EVENT, "responses": [429]})
    assert cancel(app).status_code == 429
    assert cancel(app).status_code == 500


@pytest.mark.parametrize(
    "payload",
    [
        {"event_id": EVENT, "responses": [200]},
        {"event_id": EVENT, "responses": ["explode"]},
        {"event_id": EVENT, "responses": [{"status": 500, "extra": 1}]},
        {"event_id": EVENT, "responses": [{"status": 429, "retry_after": -2}]},
        {"event_id": EVENT, "responses": [True]},
        {"event_id": "nope", "responses": [500]},
        {"event_id": EVENT, "responses": 500},
        {"responses": [500]},
    ],
)
def test_bad_scripts_are_rejected(payload: dict[str, object]) -> None:
    app = make_app()
    assert control(app, "POST", "script", payload).status_code == 400
    assert app.scripts.pending(EVENT) == []


def test_parse_scripted_kinds() -> None:
    assert parse_scripted("hang") == "hang"
    assert parse_scripted("lost") == "lost"
    assert parse_scripted("ok_bad_body") == "ok_bad_body"


# -- call log, stats, control API -----------------------------------------------------------


def test_stats_and_calls_count_every_api_request_without_the_key() -> None:
    app = make_app()
    before = time.monotonic()
    cancel(app)
    cancel(app)
    cancel(app, event_id=EVENT_2, key="wrong")
    cancel(app, UNKNOWN, event_id=EVENT_2)
    stats = control(app, "GET", "stats").json()
    assert stats["total"] == 4
    assert stats["by_status"] == {"200": 1, "400": 1, "401": 1, "404": 1}
    assert stats["by_event"] == {EVENT: 2, EVENT_2: 2}
    assert stats["by_case"] == {CASE: 3, UNKNOWN: 1}
    assert stats["in_flight"] == 0

    calls = control(app, "GET", f"calls?event_id={EVENT}").json()
    assert [(c["case_id"], c["event_id"], c["status"]) for c in calls] == [
        (CASE, EVENT, 200),
        (CASE, EVENT, 400),
    ]
    assert before <= calls[0]["time"] <= calls[1]["time"] <= time.monotonic()
    assert len(control(app, "GET", "calls").json()) == 4
    everything = control(app, "GET", "calls").text + control(app, "GET", "stats").text
    assert KEY not in everything and "wrong" not in everything
    assert KEY not in repr(app.config)


def test_call_log_is_bounded_but_counters_are_not() -> None:
    app = make_app(call_log_limit=2, auto_create=True)
    for _ in range(3):
        cancel(app)
    stats = control(app, "GET", "stats").json()
    assert (stats["total"], stats["calls_dropped"]) == (3, 1)
    assert [c["status"] for c in control(app, "GET", "calls").json()] == [400, 400]


def test_reset_clears_calls_scripts_and_faults_and_optionally_state() -> None:
    app = make_app(faults=FaultConfig(error_rate=1.0))
    cancel(app)
    control(app, "POST", "script", {"event_id": EVENT_2, "responses": [500]})
    assert control(app, "POST", "reset").json()["state_cleared"] is False
    assert control(app, "GET", "stats").json()["total"] == 0
    assert control(app, "GET", "faults").json() == FaultConfig().to_json()
    assert cancel(app, event_id=EVENT_2).status_code == 200  # script gone, state kept
    assert control(app, "POST", "reset", {"state": True}).json()["state_cleared"] is True
    assert cancel(app).content == CASE_NOT_FOUND


def test_faults_partial_update_returns_full_config_and_takes_effect() -> None:
    app = make_app()
    full = control(app, "POST", "faults", {"throttle_rate": 1, "retry_after": 3}).json()
    assert full == {**FaultConfig().to_json(), "throttle_rate": 1.0, "retry_after": 3}
    assert cancel(app).headers["retry-after"] == "3"
    assert control(app, "POST", "faults", {"throttle_rate": 0}).json()["retry_after"] == 3
    assert cancel(app).status_code == 200


def test_events_upsert_and_read_back() -> None:
    app = make_app()
    new_event = "cccccccc-0000-4000-8000-000000000001"
    payload = {
        "events": [
            {"case_id": UNKNOWN, "event_id": new_event},
            {"case_id": CASE, "event_id": EVENT, "cancelled": True},
            {"case_id": CASE, "event_id": EVENT_2, "agent_name": "zoom"},
        ]
    }
    assert control(app, "POST", "events", payload).json() == {"upserted": 3}
    assert control(app, "GET", f"events/{new_event}").json() == {
        "case_id": UNKNOWN,
        "event_id": new_event,
        "agent_name": "custom",
        "cancelled": False,
    }
    assert cancel(app, UNKNOWN, new_event).content == OK
    assert control(app, "GET", f"events/{new_event}").json()["cancelled"] is True
    assert cancel(app).content == ALREADY
    assert cancel(app, event_id=EVENT_2).content == NOT_CUSTOM_BODY
    assert control(app, "GET", f"events/{UNKNOWN}").status_code == 404


@pytest.mark.parametrize(
    "payload",
    [
        {"events": [{"case_id": "x", "event_id": EVENT}]},
        {"events": [{"case_id": CASE}]},
        {"events": [{"case_id": CASE, "event_id": EVENT, "cancelled": "yes"}]},
        {"events": [{"case_id": CASE, "event_id": EVENT, "colour": "red"}]},
        {"events": [{"case_id": CASE, "event_id": UNKNOWN}, {"case_id": CASE}]},
        {"events": "all"},
        [],
    ],
)
def test_bad_event_upserts_change_nothing(payload: object) -> None:
    app = make_app()
    before = app.state.to_seed()
    assert control(app, "POST", "events", payload).status_code == 400
    assert app.state.to_seed() == before


def test_control_routes() -> None:
    app = make_app()
    assert control(app, "GET", "health").json() == {"status": "ok"}
    assert control(app, "GET", "nope").status_code == 404
    assert control(app, "POST", "stats").status_code == 405
    bad_json = drive(app, lambda c: c.post("/_sim/faults", content=b"{"))
    assert bad_json.status_code == 400 and "error" in bad_json.json()


# -- state and seeding ----------------------------------------------------------------------


def test_state_dump_loads_back(tmp_path: Path) -> None:
    app = make_app()
    dump = control(app, "GET", "state").json()
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(dump))
    again = SimState()
    again.load_seed_file(seed)
    assert again.to_seed() == seeded_state().to_seed()
    not_custom = again.event(NOT_CUSTOM)
    assert not_custom is not None and not_custom.agent_name == "zoom"


@pytest.mark.parametrize(
    "seed",
    [
        {"cases": [{"id": "x", "events": []}]},
        {"cases": [{"id": CASE, "events": [{"id": "y"}]}]},
        {"cases": [{"id": CASE, "events": [{"id": EVENT, "isDeleted": "no"}]}]},
        {"cases": [{"id": CASE, "events": [{"id": EVENT, "colour": 1}]}]},
        {"cases": [{"id": CASE, "owner": 1}]},
        {"cases": {}},
        {"cases": [], "extra": 1},
        [],
    ],
)
def test_bad_seeds_are_rejected(seed: object) -> None:
    with pytest.raises(SeedError):
        SimState().load_seed(seed)


def test_seed_file_errors_are_seed_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(SeedError):
        SimState().load_seed_file(broken)
    with pytest.raises(SeedError):
        SimState().load_seed_file(tmp_path / "missing.json")


def test_generate_is_reproducible_with_a_seed() -> None:
    a, b, c = SimState(), SimState(), SimState()
    a.generate(4, 3, seed=7)
    b.generate(4, 3, seed=7)
    c.generate(4, 3, seed=8)
    assert len(a) == 12 and len(a.to_seed()["cases"]) == 4
    assert a.to_seed() == b.to_seed() != c.to_seed()
    assert all(e.agent_name == "custom" and not e.is_deleted for e in a.events())
