"""What the pipeline asks of whatever makes Care360 calls: one (`Caller`), or many at once
(`BatchCaller`).

The batch pipeline depends on this protocol, not on the event loop behind it: the unit
tests run batches through a plain in-thread caller, the worker through the fan-out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cancelq.care360.client import Answer


class Caller(Protocol):
    """Makes one call: any HTTP answer is returned, a failed exchange raises one of ours
    (`Care360Client`, or the fan-out's `cancel`, which waits for the loop)."""

    def cancel(self, case_id: str, event_id: str) -> Answer: ...


@dataclass(frozen=True, slots=True)
class Timed:
    """One call's result (an answer, or the exception it failed with) and when it ran."""

    result: Answer | Exception
    started_at: float
    duration_ms: float


class BatchCaller(Protocol):
    """Makes many Care360 calls at once; one result per (case id, event id), in order.

    Never raises for a call: a failed call's exception is its result. `urgent` calls
    (real-time jobs) go before waiting non-urgent ones.
    """

    def cancel_many(
        self, pairs: Sequence[tuple[str, str]], *, urgent: bool = False
    ) -> list[Timed]: ...


class CallWatch(Protocol):
    """Tells how long the oldest call in flight has run, and when that means stuck (the
    fan-out: its deadline plus a margin). The worker's heartbeat publishes both."""

    stuck_after: float

    def oldest_call_age(self) -> float | None: ...


class InThreadCaller:
    """A `BatchCaller` that makes the calls one after another on the calling thread.

    For unit tests (with an httpx mock transport behind the client) and for a runtime built
    without the fan-out; the worker uses the fan-out (`cancelq.care360.fanout`).
    """

    def __init__(self, client: Caller) -> None:
        self.client = client

    def cancel_many(
        self, pairs: Sequence[tuple[str, str]], *, urgent: bool = False
    ) -> list[Timed]:
        return [self._one(case_id, event_id) for case_id, event_id in pairs]

    def _one(self, case_id: str, event_id: str) -> Timed:
        started_at = time.time()
        t0 = time.perf_counter()
        result: Answer | Exception
        try:
            result = self.client.cancel(case_id, event_id)
        except Exception as exc:  # the caller's contract: a failed call's exception is its result
            result = exc
        return Timed(result, started_at, round((time.perf_counter() - t0) * 1000, 1))
