"""The classification table: what each Care360 answer means for a job.

One table, read top to bottom. Final answers become an `Outcome`; answers that say "not now"
raise `TransientResponse` so the caller's retry policy sees them as the same kind of thing as
a timeout. The five 400s share one `message`; only `error` tells them apart, and it is
matched on keywords, case-insensitively, so a reworded vendor message still lands right.
"""

from __future__ import annotations

from cancelq.care360.client import Answer
from cancelq.core.backoff import parse_retry_after
from cancelq.core.errors import TransientResponse
from cancelq.core.lifecycle import Outcome

#: Statuses that mean "try again": gateways, throttling, server faults.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

#: 400 `error` texts, matched by all keywords (lower case), first match wins.
BAD_REQUEST_RULES: tuple[tuple[tuple[str, ...], Outcome], ...] = (
    (("already", "cancel"), Outcome.ALREADY_CANCELLED),
    (("agentname",), Outcome.NOT_CUSTOM_EVENT),
    (("custom",), Outcome.NOT_CUSTOM_EVENT),
    (("not found",), Outcome.EVENT_NOT_FOUND),
)


def classify(answer: Answer) -> Outcome:
    """The outcome of a final answer; raises `TransientResponse` for one worth retrying."""
    status = answer.status
    if 200 <= status < 300:
        if answer.success is True:
            return Outcome.CANCELLED
        raise TransientResponse(status, error="2xx without the documented success body")
    if status == 400:
        return _classify_bad_request(answer.error or answer.message or "")
    if status == 401:
        return Outcome.UNAUTHORIZED
    if status == 404:
        if answer.message is None and answer.error is None:
            # Not Care360's JSON: a proxy or a wrong base URL. Never settle a case as missing
            # on that; retry, and dead-letter (replayable) if it persists.
            raise TransientResponse(status, error="404 without Care360's JSON body")
        return Outcome.CASE_NOT_FOUND
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


def _classify_bad_request(error: str) -> Outcome:
    text = error.lower()
    for keywords, outcome in BAD_REQUEST_RULES:
        if all(word in text for word in keywords):
            return outcome
    return Outcome.INVALID_REQUEST
