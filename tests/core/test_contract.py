"""`cancelq.core.contract`: canonical UUIDs, and one-line `InvalidInput` errors naming the field."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cancelq.core.contract import CancelRequest, canonical_uuid
from cancelq.core.errors import InvalidInput

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"


@pytest.mark.parametrize(
    "text",
    [CASE, CASE.upper(), f"  {CASE}  "],
    ids=["lower", "upper", "padded"],
)
def test_canonical_uuid(text: str) -> None:
    assert canonical_uuid(text, "case_id") == CASE


@pytest.mark.parametrize(
    "text",
    [
        CASE.replace("-", ""),
        "{" + CASE + "}",
        "urn:uuid:" + CASE,
        CASE[:9] + CASE[9:].replace("-", "", 1) + "",  # a hyphen missing
        CASE[:4] + "-" + CASE[4:8] + CASE[9:],  # a hyphen moved
        "{" + CASE.replace("-", "") + "}",
    ],
    ids=["no-hyphens", "braces", "urn", "hyphen-missing", "hyphen-moved", "braced-bare"],
)
def test_only_the_canonical_spelling_is_accepted(text: str) -> None:
    """Python's uuid.UUID takes all of these; the spec's ids are 8-4-4-4-12 only."""
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(case_id=text, event_id=EVENT)
    assert info.value.field == "case_id"
    assert str(info.value).startswith("case_id: not a canonical UUID")
    assert "\n" not in str(info.value)


@given(st.uuids())
@settings(max_examples=200, deadline=None)
def test_property_a_uuid_is_accepted_in_exactly_its_canonical_spellings(value: uuid.UUID) -> None:
    text = str(value)
    assert canonical_uuid(text.upper(), "event_id") == text
    for other in (value.hex, "{" + text + "}", value.urn):
        with pytest.raises(InvalidInput):
            canonical_uuid(other, "event_id")


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_property_any_text_is_a_canonical_uuid_or_one_line_naming_the_field(text: str) -> None:
    try:
        result = canonical_uuid(text, "case_id")
    except InvalidInput as exc:
        assert exc.field == "case_id" and "\n" not in str(exc)
        return
    assert str(uuid.UUID(result)) == result


def test_canonical_uuid_accepts_uuid_objects() -> None:
    assert canonical_uuid(uuid.UUID(CASE), "case_id") == CASE


@pytest.mark.parametrize(
    "value",
    ["", "not-a-uuid", CASE[:-1], CASE + "0", CASE.replace("a", "g"), 12345, None, b"x"],
    ids=["empty", "words", "short", "long", "non-hex", "int", "none", "bytes"],
)
def test_bad_uuid_names_the_field(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_uuid(value, "event_id")
    assert info.value.field == "event_id"
    assert str(info.value).startswith("event_id: ")


def test_request_is_canonical() -> None:
    request = CancelRequest.parse(
        case_id=CASE.upper(), event_id=f" {EVENT.upper()} ", run_id=" run-1 ", reason="  "
    )
    assert request.case_id == CASE
    assert request.event_id == EVENT
    assert request.run_id == "run-1"
    assert request.reason is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"event_id": EVENT}, "case_id", id="missing-case"),
        pytest.param({"case_id": CASE}, "event_id", id="missing-event"),
        pytest.param({"case_id": "nope", "event_id": EVENT}, "case_id", id="bad-case"),
        pytest.param({"case_id": CASE, "event_id": "12"}, "event_id", id="bad-event"),
        pytest.param({"case_id": CASE, "event_id": EVENT, "colour": "red"}, "colour",
                     id="unknown-field"),
        pytest.param({"case_id": CASE, "event_id": EVENT, "run_id": 7}, "run_id",
                     id="run-id-not-text"),
        pytest.param({"case_id": CASE, "event_id": EVENT, "requested_by": "x" * 201},
                     "requested_by", id="requested-by-too-long"),
        pytest.param({"case_id": CASE, "event_id": EVENT, "reason": "a\nb"}, "reason",
                     id="reason-two-lines"),
        pytest.param({"case_id": CASE, "event_id": EVENT, "reason": "r" * 1001}, "reason",
                     id="reason-too-long"),
    ],
)
def test_invalid_request_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(**fields)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ")
    assert "\n" not in message and "\r" not in message


def test_uuid_with_newline_is_reported_on_one_line() -> None:
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(case_id=CASE[:8] + "\n" + CASE[9:], event_id=EVENT)
    assert info.value.field == "case_id"
    assert "\n" not in str(info.value)


def test_huge_bad_value_is_truncated_in_the_message() -> None:
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(case_id=CASE, event_id="z" * 5000)
    assert len(str(info.value)) < 200


def test_missing_message() -> None:
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(case_id=CASE)
    assert str(info.value) == "event_id: required"


def test_unknown_field_message() -> None:
    with pytest.raises(InvalidInput) as info:
        CancelRequest.parse(case_id=CASE, event_id=EVENT, token="secret")
    assert str(info.value) == "token: unknown field"
    assert "secret" not in str(info.value)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        CancelRequest.parse(case_id="x", event_id=EVENT)
