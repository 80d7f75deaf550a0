"""The global rate limit on Care360 calls: a `Gate` every worker shares through Redis.

`CARE360_RATE_LIMIT` calls per second across all workers on all hosts (0 = no limit). The
counting is the `limits` library's moving window on its Redis storage: every call takes an
entry stamped with its time, and a call is let through only while fewer than the limit were
taken in the last second, checked and taken in one Lua script. Any 1-second window
therefore holds at most `limit` calls, measured where they are taken; by the time they
reach Care360, network and scheduling jitter can shift a few by some milliseconds, which is
the "one burst" of slack the integration test allows. A fractional limit under 1 becomes
one call per `ceil(1/rate)` seconds; above 1 it is rounded down to whole calls per second.

Waiting for a slot must neither hold a worker slot for long nor put real-time work behind
bulk work:

- a call that finds no slot waits a little (up to `REALTIME_WAIT_SECONDS` for real-time,
  `BULK_WAIT_SECONDS` for bulk) for the oldest call to leave the window, then gives up its
  worker slot: the gate answers `Defer`, which parks the job in the store's delayed set
  without using an attempt (`cancelq.pipeline.attempt`);
- bulk never takes the last `reserve` slots of a window (10% of the limit, at least one
  when the limit is 2 or more), so real-time work always finds room even while a bulk run
  is saturating the limit;
- a deferred bulk job books its turn on a shared timeline (`lua/reserve_slot.lua`), one
  turn per `1 / bulk rate` seconds, so a backlog comes back spread out at the rate it can be
  served instead of all at once and deferred again and again.

The limiter's entries are stamped with each worker's own clock (as `limits` does): hosts
are expected to keep time with NTP; a skew of a few ms is within the burst.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from cancelq.core.contract import CancelRequest
from cancelq.pipeline.gates import Defer, GateVerdict, Proceed
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE
from cancelq.store.rate_window import TurnBook, moving_window_storage

log = logging.getLogger("cancelq.ratelimit")

REALTIME_WAIT_SECONDS = 0.2
BULK_WAIT_SECONDS = 0.05
REALTIME_RESERVE_FRACTION = 0.1
MIN_DEFER_SECONDS = 0.05
DEFER_JITTER_SECONDS = 0.05
POLL_FLOOR_SECONDS = 0.005
LIMITER_ID = "care360"


@dataclass(frozen=True, slots=True)
class Limit:
    """`amount` calls per `window_seconds`; bulk may use all but `reserve` of them."""

    amount: int
    window_seconds: int = 1
    reserve: int = 0

    @classmethod
    def for_rate(cls, per_second: float) -> Limit | None:
        """The limit for `CARE360_RATE_LIMIT`; None for 0 (no limit)."""
        if per_second <= 0:
            return None
        if per_second >= 1:
            amount, window = int(per_second), 1
        else:
            amount, window = 1, math.ceil(1 / per_second)
        reserve = 0
        if amount >= 2:
            reserve = min(amount - 1, max(1, round(amount * REALTIME_RESERVE_FRACTION)))
        return cls(amount, window, reserve)

    @property
    def bulk_interval(self) -> float:
        """Seconds between two bulk turns when bulk alone uses the limit."""
        return self.window_seconds / (self.amount - self.reserve)

    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.amount, self.window_seconds)


class RateLimitGate:
    """A `Gate`: a slot under the global limit, or `Defer` a short while."""

    per_batch = False  # a slot per call

    def __init__(
        self,
        limiter: MovingWindowRateLimiter,
        limit: Limit,
        *,
        turns: TurnBook | None = None,
        bulk_queues: Collection[str] = (BULK_QUEUE,),
        realtime_wait: float = REALTIME_WAIT_SECONDS,
        bulk_wait: float = BULK_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.limiter = limiter
        self.limit = limit
        self.item = limit.item()
        self.turns = turns
        self.bulk_queues = frozenset(bulk_queues)
        self.realtime_wait = realtime_wait
        self.bulk_wait = bulk_wait
        self.sleep = sleep
        self.clock = clock
        self.rand = rand

    def __repr__(self) -> str:
        return (f"RateLimitGate({self.limit.amount}/{self.limit.window_seconds}s, "
                f"realtime reserve {self.limit.reserve})")

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        bulk = queue in self.bulk_queues
        deadline = self.clock() + (self.bulk_wait if bulk else self.realtime_wait)
        while True:
            if self.try_acquire(bulk=bulk):
                return Proceed()
            wait = self.seconds_until_free(bulk=bulk)
            now = self.clock()
            if now + wait > deadline:
                return self._defer(bulk, wait)
            self.sleep(max(wait, POLL_FLOOR_SECONDS))

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        """Nothing to learn from an answer: the limit is a promise, not a reaction."""

    def try_acquire(self, *, bulk: bool) -> bool:
        """Take a slot if there is one (bulk: only while `reserve` slots would stay free)."""
        if bulk and self.limit.reserve and not self.limiter.test(
            self.item, LIMITER_ID, cost=self.limit.reserve + 1
        ):
            return False
        # The hit itself is atomic: even if the test above raced, the limit holds.
        return self.limiter.hit(self.item, LIMITER_ID)

    def seconds_until_free(self, *, bulk: bool = False) -> float:
        """Until the oldest call in the window leaves it (a slot opens then, at the earliest)."""
        stats = self.limiter.get_window_stats(self.item, LIMITER_ID)
        if stats.remaining > (self.limit.reserve if bulk else 0):
            return 0.0
        return max(0.0, stats.reset_time - time.time())

    def _defer(self, bulk: bool, wait: float) -> Defer:
        earliest = max(MIN_DEFER_SECONDS, wait)
        if bulk and self.turns is not None:
            seconds = self.turns.book(self.limit.bulk_interval, earliest)
            why = f"rate limit {self.limit.amount}/{self.limit.window_seconds}s: bulk turn booked"
        else:
            seconds = earliest + self.rand() * DEFER_JITTER_SECONDS
            why = f"rate limit {self.limit.amount}/{self.limit.window_seconds}s reached"
        return Defer(seconds=round(seconds, 3), why=why)


def rate_limit_gate(store: AuditStore, per_second: float) -> RateLimitGate | None:
    """The gate for `CARE360_RATE_LIMIT` on the store's Redis; None when there is no limit."""
    limit = Limit.for_rate(per_second)
    if limit is None:
        return None
    return RateLimitGate(
        MovingWindowRateLimiter(moving_window_storage(store)), limit, turns=TurnBook.of(store),
        bulk_queues=(store.queues.bulk,),
    )
