"""The seam for policies: a `Gate` is asked before every call and told every answer.

Policies (the 401 block, the circuit breaker, the rate limit) implement `Gate` in modules
of their own; the attempt only knows this protocol and the three verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome


@dataclass(frozen=True, slots=True)
class Proceed:
    """The gate lets the call go ahead. `probe`: this call tests whether Care360 is back
    (the circuit breaker is open); if it fails, it does not count against the job's budget."""

    probe: bool = False


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: park the job for `seconds` without using an attempt (e.g. rate limit)."""

    seconds: float
    why: str


@dataclass(frozen=True, slots=True)
class EndWithoutCall:
    """End the job with `outcome` and no call (e.g. the key is known to be wrong)."""

    outcome: Outcome
    why: str


GateVerdict = Proceed | Defer | EndWithoutCall


class Gate(Protocol):
    """Asked before every attempt; told every answer. Policies plug in here, not in the task.

    `per_batch`: the verdict is the same for every job at one moment (the 401 block, the
    breaker), so a batch whose first job it lets through plainly does not ask it again for
    the others; a per-call gate (the rate limit: a slot per call) is asked for every job.
    """

    per_batch: bool

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict: ...

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None: ...
