"""When a failed job is tried again, and when it is dead: the one retry policy.

Every place that retries asks this module instead of deciding for itself, so one change of
the rule changes it everywhere:

- an attempt whose call failed (`attempt.judge`): `after_failure` says retry in n seconds
  or dead (`retries_exhausted`);
- an attempt whose lease expired (the scheduler's reaper): `delay` for the retry, and
  `max_attempts` for the budget `reap.lua` checks;
- a job whose attempt never started because something that is not Care360 failed (a gate,
  a bug): `ERROR_DEFER_SECONDS`, without using an attempt;
- `begin.lua` and `reap.lua` apply `exhausted` inside Redis (attempts used minus those
  spared >= `max_attempts`), atomically with the record; they are given `max_attempts` from
  here.

The delays are full-jitter exponential backoff, a server's `Retry-After` winning but capped
(`cancelq.core.backoff`): the cap is what keeps a retry within the broker's visibility
timeout. A failed probe of the open circuit breaker is `spared`: it never uses the budget.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from cancelq.core.backoff import next_delay
from cancelq.core.settings import Settings

#: a job whose attempt an error that is not Care360's stopped (a gate raised, a bug) is
#: tried again after this long, without using an attempt
ERROR_DEFER_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the job again after `delay_seconds` (rounded to the millisecond)."""

    delay_seconds: float


@dataclass(frozen=True, slots=True)
class Dead:
    """The budget is spent: the job ends `retries_exhausted`, in the dead letters."""


Next = Retry | Dead


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The budget (`CANCEL_MAX_ATTEMPTS`) and the backoff (`RETRY_BASE_SECONDS`, capped at
    `RETRY_MAX_SECONDS`) of every retry, from the one settings object."""

    max_attempts: int
    base_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_attempts, settings.retry_base_seconds,
                   settings.retry_max_seconds)

    def exhausted(self, used: int) -> bool:
        """Whether `used` attempts (those spared not counted) spend the budget."""
        return used >= self.max_attempts

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """The wait after the `attempt`-th call failed (an attempt 0, lost before it was
        counted, waits as the first)."""
        return round(next_delay(max(1, attempt), retry_after=retry_after,
                                base_seconds=self.base_seconds, max_seconds=self.max_seconds,
                                rand=rand), 3)

    def after_failure(
        self,
        attempt: int,
        used: int,
        *,
        retry_after: float | None = None,
        spared: bool = False,
        rand: Callable[[], float] = random.random,
    ) -> Next:
        """After the `attempt`-th call failed with `used` of the budget used (this one
        included): retry, or dead. A `spared` call (a probe of the open breaker) is always
        retried."""
        if not spared and self.exhausted(used):
            return Dead()
        return Retry(self.delay(attempt, retry_after=retry_after, rand=rand))
