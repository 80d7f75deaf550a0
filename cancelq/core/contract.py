"""The message contract: what a cancellation request is, for every producer in any language.

Task `cancellations.cancel_calendar_event`, JSON only, keyword arguments `job_id`, `case_id`,
`event_id` and optional `run_id`, `requested_by`, `reason`. Bulk intake sends many jobs per
message instead (`BATCH_TASK_NAME`: keyword arguments `jobs`, a list of objects with
`job_id`, `case_id`, `event_id` and optional `reason`, and optional `run_id`, `requested_by`
common to all of them); foreign producers keep the one-job task. Validation lives here so that the
Python producer, the CLI, bulk intake and the task itself refuse the same inputs with the
same one-line message naming the field.

A job id becomes part of Redis keys (`{prefix}:job:{job_id}`), so it is a canonical UUID
(stored lower case) before any key is built: a message whose `job_id` is anything else
(`<another job>:attempts` would name another job's attempt list) is recorded refused under
an id derived from it (`derived_job_id`), never under its own words.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cancelq.core.errors import InvalidInput

TASK_NAME = "cancellations.cancel_calendar_event"
BATCH_TASK_NAME = "cancellations.cancel_calendar_events"
#: jobs one batch message may carry; a longer `jobs` list is refused whole
MAX_BATCH_JOBS = 1000
MAX_TEXT = 200
MAX_REASON = 1000


#: The spec's ids: 8-4-4-4-12 hex digits, hyphenated (either case; stored lower case).
CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def canonical_uuid(value: object, field: str) -> str:
    """Lower-case hyphenated form, so `ABC...` and `abc...` are one event for idempotency.

    Only the canonical spelling is accepted: Python's `uuid.UUID` also takes braces,
    `urn:uuid:`, no hyphens or hyphens anywhere, which Care360 does not, and which would
    make two spellings of one id look like two events to anything comparing text.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a UUID string")
    text = value.strip()
    if CANONICAL_UUID.fullmatch(text):
        return text.lower()
    try:
        uuid.UUID(text)
    except ValueError:
        raise InvalidInput(field, f"not a valid UUID: {text[:60]!r}") from None
    raise InvalidInput(
        field, f"not a canonical UUID (write it as 8-4-4-4-12 hex digits): {text[:60]!r}"
    )


class CancelRequest(BaseModel):
    """One request to cancel one calendar event of one case."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    case_id: str
    event_id: str
    run_id: str | None = None
    requested_by: str | None = None
    reason: str | None = None

    @field_validator("case_id", "event_id", mode="before")
    @classmethod
    def _uuid(cls, value: object, info: Any) -> str:
        return canonical_uuid(value, info.field_name)

    @field_validator("run_id", "requested_by", mode="before")
    @classmethod
    def _short_text(cls, value: object, info: Any) -> str | None:
        return _optional_text(value, info.field_name, MAX_TEXT)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: object) -> str | None:
        return _optional_text(value, "reason", MAX_REASON)

    @classmethod
    def parse(cls, **fields: object) -> CancelRequest:
        """Validate; the first problem becomes `InvalidInput` naming its field."""
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except InvalidInput:
            raise
        except ValidationError as exc:
            error = _as_invalid_input(exc)
        # Raised outside the `except` on purpose: inside it this frame still holds the
        # ValidationError, which holds `error` (its ctx), whose traceback holds this frame.
        # pydantic-core's ValidationError is invisible to the garbage collector, so that
        # cycle leaked ~3.5 KB per invalid request (bench/bulk_memory.py found it).
        raise error from None


def _optional_text(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    text = value.strip()
    if not text:
        return None
    if len(text) > limit:
        raise InvalidInput(field, f"longer than {limit} characters")
    if any(ch in text for ch in "\r\n\0"):
        raise InvalidInput(field, "must be a single line")
    return text


def _as_invalid_input(exc: ValidationError) -> InvalidInput:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "request"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidInput):
        return cause
    message = str(error["msg"])
    if error["type"] == "missing":
        message = "required"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return InvalidInput(field, message)


#: fields of one job in a batch message (`run_id` and `requested_by` are the batch's)
BATCH_JOB_FIELDS = ("job_id", "case_id", "event_id", "reason")
REQUEST_FIELDS = ("case_id", "event_id", "run_id", "requested_by", "reason")


@dataclass(frozen=True, slots=True)
class Submitted:
    """One job as a message gave it: valid (`request`), or refused (`problem`) with its text
    fields kept for the record of why (a refused job is recorded, never dropped)."""

    job_id: str
    request: CancelRequest | None
    problem: str | None
    fields: dict[str, str]


def derived_job_id(kind: str, text: str) -> str:
    """A canonical job id made from a text that is not one (a foreign task id, a bad
    `job_id`): the same text gives the same id, so a redelivered copy names the same job."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cancelq:{kind}:{text}"))


def job_id_of(given: object, fallback: str) -> tuple[str, InvalidInput | None]:
    """The job id a message names, safe to build keys from, and what is wrong with it.

    No `job_id`: `fallback` (the task id), or an id derived from it when it is no UUID (a
    foreign producer's task ids are its own business). A `job_id` that is no canonical UUID
    is a refusal: the message is recorded under an id derived from the bad one, never run.
    """
    if given is None or given == "":
        if isinstance(fallback, str) and CANONICAL_UUID.fullmatch(fallback):
            return fallback.lower(), None
        return derived_job_id("task", str(fallback)), None
    try:
        return canonical_uuid(given, "job_id"), None
    except InvalidInput as exc:
        return derived_job_id("job_id", repr(given)), exc


def read_job(job_id: object, fields: Mapping[str, object], unknown: Mapping[str, object],
             *, fallback: str = "") -> Submitted:
    """Validate one job's id and fields; `unknown`: any other keyword the message had;
    `fallback`: the id to use when the message names none (see `job_id_of`)."""
    text = {k: v for k, v in fields.items() if isinstance(v, str)}
    safe_id, bad_id = job_id_of(job_id, fallback)
    try:
        if bad_id is not None:
            raise bad_id
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        return Submitted(safe_id, CancelRequest.parse(**fields), None, text)
    except InvalidInput as exc:
        return Submitted(safe_id, None, str(exc), text)


def read_batch(jobs: object, common: Mapping[str, object], batch_id: str) -> list[Submitted]:
    """The jobs of a batch message; raises `InvalidInput` when `jobs` is no list of objects.

    A job without a `job_id` gets one derived from the message id and its place, so a
    redelivered copy of the message names the same job; a job whose `job_id` is no UUID is
    refused (`read_job`).
    """
    if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
        raise InvalidInput("jobs", "must be a list of objects")
    if len(jobs) > MAX_BATCH_JOBS:
        raise InvalidInput("jobs", f"more than {MAX_BATCH_JOBS} jobs in one message")
    out: list[Submitted] = []
    for index, job in enumerate(jobs):
        fallback = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cancelq:{batch_id}:{index}"))
        fields = {name: job.get(name) for name in BATCH_JOB_FIELDS[1:]}
        unknown = {k: v for k, v in job.items() if k not in BATCH_JOB_FIELDS}
        out.append(read_job(job.get("job_id"), {**common, **fields}, unknown,
                            fallback=fallback))
    return out
