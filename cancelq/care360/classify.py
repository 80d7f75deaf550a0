"""The classification table: what each Care360 answer means for a job.

One table, read top to bottom. Final answers become an `Outcome`; answers that say "not now"
raise `TransientResponse` so the caller's retry policy sees them as the same kind of thing as
a timeout. The five 400s share one `message`; only `error` tells them apart, and it is
matched exactly against the spec's texts: a keyword match let an unrelated 400 that merely
mentioned "custom" settle a job as `not_custom_event`. Anything else is `invalid_request`,
with the raw body kept in the audit for a human to read.

A 404 is `case_not_found` only with Care360's own body (`error` exactly "No Case found for
provided details!"); any other 404 (a gateway's `{"message":"Not Found"}`, a wrong base URL)
is retried and, if it persists, dead-lettered (replayable), never settled as final.
"""

from __future__ import annotations

from cancelq.care360.client import Answer
from cancelq.core.backoff import parse_retry_after
from cancelq.core.errors import TransientResponse
from cancelq.core.lifecycle import Outcome

#: Statuses that mean "try again": gateways, throttling, server faults.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

#: The spec's 400 `error` texts, byte for byte.
BAD_REQUEST_ERRORS: dict[str, Outcome] = {
    "Calendar event has already been cancelled": Outcome.ALREADY_CANCELLED,
    'Calendar event can only be cancelled if agentName is "custom"': Outcome.NOT_CUSTOM_EVENT,
    "Calendar event not found": Outcome.EVENT_NOT_FOUND,
    "Invalid action": Outcome.INVALID_REQUEST,
    "id must be a valid UUID": Outcome.INVALID_REQUEST,
}
#: The spec's 404 `error` text: the only 404 that says the case does not exist.
CASE_NOT_FOUND_ERROR = "No Case found for provided details!"


def classify(answer: Answer) -> Outcome:
    """The outcome of a final answer; raises `TransientResponse` for one worth retrying."""
    status = answer.status
    if 200 <= status < 300:
        if answer.success is True:
            return Outcome.CANCELLED
        raise TransientResponse(status, error="2xx without the documented success body")
    if status == 400:
        return BAD_REQUEST_ERRORS.get(answer.error or "", Outcome.INVALID_REQUEST)
    if status == 401:
        return Outcome.UNAUTHORIZED
    if status == 404:
        if answer.error == CASE_NOT_FOUND_ERROR:
            return Outcome.CASE_NOT_FOUND
        # Not Care360's answer: a proxy or a wrong base URL. Never settle a case as missing
        # on that; retry, and dead-letter (replayable) if it persists.
        raise TransientResponse(status, error="404 without Care360's case-not-found body")
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientResponse(
            status,
            error=answer.error or answer.message,
            delay=parse_retry_after(answer.retry_after),
        )
    if 400 <= status < 500:
        return Outcome.INVALID_REQUEST
    # 1xx/3xx: we never follow redirects, so this is a misconfigured base URL or proxy.
    raise TransientResponse(status, error="unexpected status")
