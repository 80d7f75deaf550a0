"""`cancelq.care360.classify.classify`: one test per row of the classification table.

Bodies are the spec's text byte for byte (docs/care360-api.md), parsed
through `Answer.from_response` so the parsing is exercised too.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cancelq.care360.classify import BAD_REQUEST_ERRORS, CASE_NOT_FOUND_ERROR, classify
from cancelq.care360.client import Answer
from cancelq.core.errors import RetryableError, TransientResponse
from cancelq.core.lifecycle import Outcome

OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)


def bad_request(error: str) -> bytes:
    return json.dumps(
        {"status": 400, "success": False, "message": "Invalid request", "error": error}
    ).encode()


INVALID_ACTION = (
    b'{"status":400,"success":false,"message":"Invalid request","error":"Invalid action"}'
)
INVALID_UUID = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"id must be a valid UUID"}'
)
EVENT_NOT_FOUND = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event not found"}'
)
ALREADY = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event has already been cancelled"}'
)
NOT_CUSTOM = (
    b'{"status":400,"success":false,"message":"Invalid request",'
    b'"error":"Calendar event can only be cancelled if agentName is \\"custom\\""}'
)
UNAUTHORIZED = b'{"status":401,"success":false,"message":"Invalid or missing API key"}'
CASE_NOT_FOUND = (
    b'{"status":404,"success":false,"message":"Invalid request",'
    b'"error":"No Case found for provided details!"}'
)
INTERNAL = b'{"status":500,"success":false,"message":"Internal error"}'


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    return Answer.from_response(httpx.Response(status, content=body, headers=headers))


def test_not_custom_body_is_the_spec_text() -> None:
    assert json.loads(NOT_CUSTOM)["error"] == (
        'Calendar event can only be cancelled if agentName is "custom"'
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(200, OK, Outcome.CANCELLED, id="200-cancelled"),
        pytest.param(400, ALREADY, Outcome.ALREADY_CANCELLED, id="400-already-cancelled"),
        pytest.param(400, EVENT_NOT_FOUND, Outcome.EVENT_NOT_FOUND, id="400-event-not-found"),
        pytest.param(400, NOT_CUSTOM, Outcome.NOT_CUSTOM_EVENT, id="400-not-custom"),
        pytest.param(400, INVALID_ACTION, Outcome.INVALID_REQUEST, id="400-invalid-action"),
        pytest.param(400, INVALID_UUID, Outcome.INVALID_REQUEST, id="400-invalid-uuid"),
        pytest.param(401, UNAUTHORIZED, Outcome.UNAUTHORIZED, id="401-unauthorized"),
        pytest.param(404, CASE_NOT_FOUND, Outcome.CASE_NOT_FOUND, id="404-case-not-found"),
    ],
)
def test_documented_final_answers(status: int, body: bytes, expected: Outcome) -> None:
    assert classify(answer(status, body)) is expected


@pytest.mark.parametrize(
    "error",
    [
        pytest.param("CALENDAR EVENT ALREADY CANCELLED", id="upper"),
        pytest.param("Calendar event was already canceled", id="us-spelling"),
        pytest.param("calendar event has already been cancelled.", id="lower-with-period"),
        pytest.param("CALENDAR EVENT NOT FOUND", id="not-found-upper"),
        pytest.param("Calendar event was not found", id="not-found-reworded"),
        pytest.param("Only events with AGENTNAME 'custom' can be cancelled",
                     id="agentname-reworded"),
        pytest.param("Calendar event is not a custom event", id="custom-reworded"),
        pytest.param("Upstream rejected a custom header", id="unrelated-mentions-custom"),
        pytest.param("Calendar event not found ", id="trailing-space"),
    ],
)
def test_only_the_exact_spec_texts_settle_a_400(error: str) -> None:
    """A keyword match let an unrelated 400 that mentions 'custom' settle as not_custom_event:
    only Care360's exact `error` texts decide; anything else is invalid_request."""
    assert classify(answer(400, bad_request(error))) is Outcome.INVALID_REQUEST


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"message":"Not Found"}', id="gateway-json"),
        pytest.param(b'{"status":404,"success":false,"message":"Invalid request",'
                     b'"error":"No Case found"}', id="other-error-text"),
        pytest.param(b'{"status":404,"success":false,"message":"Invalid request"}',
                     id="no-error-field"),
        pytest.param(b"<html>Not Found</html>", id="html"),
    ],
)
def test_404_is_case_not_found_only_with_care360s_exact_body(body: bytes) -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(404, body))
    assert info.value.status == 404


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_property_a_400_settles_only_on_a_spec_text(error: str) -> None:
    outcome = classify(answer(400, bad_request(error)))
    assert outcome is BAD_REQUEST_ERRORS.get(error, Outcome.INVALID_REQUEST)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_property_any_answer_is_an_outcome_or_transient(status: int, body: bytes) -> None:
    """Whatever the status and body: an Outcome, or TransientResponse; never another error,
    and never a final 'not found' without the spec's exact text."""
    try:
        outcome = classify(answer(status, body))
    except TransientResponse:
        return
    assert isinstance(outcome, Outcome)
    if outcome is Outcome.CASE_NOT_FOUND:
        assert answer(status, body).error == CASE_NOT_FOUND_ERROR
    if outcome in (Outcome.ALREADY_CANCELLED, Outcome.NOT_CUSTOM_EVENT, Outcome.EVENT_NOT_FOUND):
        assert status == 400 and answer(status, body).error in BAD_REQUEST_ERRORS


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(bad_request("Something else went wrong"), id="unknown-error"),
        pytest.param(b'{"status":400,"success":false,"message":"Invalid request"}',
                     id="no-error-field"),
        pytest.param(b"<html>Bad Request</html>", id="not-json"),
        pytest.param(b"", id="empty"),
    ],
)
def test_unknown_400_is_invalid_request(body: bytes) -> None:
    assert classify(answer(400, body)) is Outcome.INVALID_REQUEST


@pytest.mark.parametrize("status", [403, 409, 422], ids=lambda s: f"{s}-invalid-request")
def test_other_final_4xx_are_invalid_request(status: int) -> None:
    body = json.dumps({"status": status, "success": False, "message": "nope"}).encode()
    assert classify(answer(status, body)) is Outcome.INVALID_REQUEST


def test_dead_outcomes_are_unauthorized_and_exhausted_only() -> None:
    dead = {outcome for outcome in Outcome if outcome.is_dead}
    assert dead == {Outcome.UNAUTHORIZED, Outcome.RETRIES_EXHAUSTED}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504], ids=lambda s: f"{s}-retry")
def test_transient_statuses_raise(status: int) -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(status, INTERNAL if status == 500 else b"gateway says no"))
    assert info.value.status == status
    assert info.value.delay is None
    assert isinstance(info.value, RetryableError)


def test_500_keeps_the_vendor_message() -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(500, INTERNAL))
    assert info.value.error == "Internal error"
    assert str(info.value) == "HTTP 500: Internal error"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, b"", id="200-empty"),
        pytest.param(200, b"<html>ok</html>", id="200-html"),
        pytest.param(200, b'{"status":200,"success":true}', id="200-no-data"),
        pytest.param(200, b'{"success":true,"data":{"success":false}}', id="200-data-false"),
        pytest.param(200, b'{"success":false,"data":{"success":true}}', id="200-success-false"),
        pytest.param(200, b'{"success":"true","data":{"success":true}}', id="200-string-true"),
        pytest.param(204, b"", id="204"),
    ],
)
def test_2xx_without_the_documented_body_is_transient(status: int, body: bytes) -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(status, body))
    assert info.value.status == status


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_becomes_delay(status: int) -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(status, b"", {"Retry-After": "17"}))
    assert info.value.delay == 17.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(503, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert info.value.delay == 0.0


def test_garbage_retry_after_is_ignored() -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(429, b"", {"Retry-After": "soon"}))
    assert info.value.delay is None


def test_redirect_is_not_followed_and_not_final() -> None:
    with pytest.raises(TransientResponse) as info:
        classify(answer(302, b"", {"Location": "https://elsewhere.example/"}))
    assert info.value.status == 302


def test_404_without_care360_json_is_transient_not_case_not_found() -> None:
    answer = Answer(status=404, success=None, message=None, error=None, retry_after=None,
                    raw_body="<html>Not Found</html>")
    with pytest.raises(TransientResponse):
        classify(answer)
