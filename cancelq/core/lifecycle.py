"""The job lifecycle vocabulary: states, outcomes and the verdicts of an attempt.

One copy of every name the audit store, the pipeline, the CLI and the Lua scripts share.
`cancelq.store.scripts` writes these values into the prelude of every Lua script as
constants (`STATE.QUEUED`, `OUTCOME.CANCELLED`, `DECISION.RETRY`, `BEGIN_VERDICT.RUN`,
`VERDICT.INTERRUPTED`, `BREAKER.OPEN`), so the two languages cannot drift: a name is
spelled here only.

    queued -> running -> (retrying -> running)* -> settled (with an outcome)
                                                 `-> dead (unauthorized, retries_exhausted)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SETTLED = "settled"
    DEAD = "dead"

    @property
    def is_final(self) -> bool:
        return self in (State.SETTLED, State.DEAD)


class Outcome(StrEnum):
    CANCELLED = "cancelled"
    ALREADY_CANCELLED = "already_cancelled"
    EVENT_NOT_FOUND = "event_not_found"
    NOT_CUSTOM_EVENT = "not_custom_event"
    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    CASE_NOT_FOUND = "case_not_found"
    RETRIES_EXHAUSTED = "retries_exhausted"

    @property
    def is_dead(self) -> bool:
        """Dead-lettered: nothing is wrong with the request; replay once the cause is fixed."""
        return self in DEAD_OUTCOMES


DEAD_OUTCOMES = frozenset({Outcome.UNAUTHORIZED, Outcome.RETRIES_EXHAUSTED})


#: What `finish` does with a job after an attempt (`AuditStore.finish`, `lua/finish.lua`).
Decision = Literal["settle", "dead", "retry"]

#: What `begin` decided (`AuditStore.begin`, `lua/begin.lua`): run attempt n, or don't call
#: because the job is already settled or dead, has used all its attempts, another copy of it
#: holds a live lease (`leased`: wait for it), the message's (case, event) is not the
#: job's (`conflict`: recorded as rejected on a job of its own), a foreign message names a
#: pair that has a live job (`duplicate`: of that job), or the job waits in the delayed set
#: for a due time not reached (`not_due`: that entry brings it back).
BeginVerdict = Literal["run", "settled", "exhausted", "leased", "conflict", "duplicate",
                       "not_due"]


class Verdict(StrEnum):
    """An attempt's verdict when it is not the outcome of an answer (that one is `Outcome`)."""

    RETRY = "retry"
    #: the worker stopped before the attempt was recorded (`lua/begin.lua` closes it)
    INTERRUPTED = "interrupted"
    #: not an attempt: the note an operator's replay leaves (`AuditStore.replay`)
    REPLAYED = "replayed"
    #: not an attempt: a message that reused another job's id (`lua/begin.lua`)
    REJECTED = "rejected"
    #: not an attempt: the broker lost the job's message and it was published again
    #: (`cancelq.store.lost`)
    REPUBLISHED = "republished"
    #: not an attempt: a foreign message for this job's pair, not run (`lua/begin.lua`)
    DUPLICATE = "duplicate"


class BreakerState(StrEnum):
    """The shared circuit breaker on Care360 calls (`cancelq.pipeline.breaker`)."""

    CLOSED = "closed"
    OPEN = "open"
    #: one worker's probe call is in flight; everyone else waits for its answer
    HALF_OPEN = "half_open"
