"""Riding out a short Redis outage for a write that is safe to repeat.

An answer from Care360 that cannot be recorded is worse than a slow one: the job's message is
handed back, the lease runs out, and the job is called a second time (a Redis restart or a
Sentinel failover under load turned two thirds of the in-flight jobs into `already_cancelled`
that way). `finish` is idempotent (`lua/finish.lua` answers a repeat of an applied finish
"applied" again, and a stale one changes nothing), so it is simply tried again: through a
reconnect, a primary that is still loading its data, or a demoted primary (`READONLY`; a new
connection asks Sentinel for the new one), with a short capped backoff, for as long as the
attempt's lease would have lasted. Past that, the error goes up as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("cancelq.store")

T = TypeVar("T")

#: the errors of a Redis that is restarting, failing over or briefly unreachable
TRANSIENT: tuple[type[Exception], ...] = (
    RedisConnectionError, RedisTimeoutError, ReadOnlyError, TryAgainError,
)
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 1.0


def until_recorded(
    write: Callable[[], T], *, seconds: float, what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`write()`, tried again on a transient Redis error for up to `seconds` in all."""
    deadline = time.monotonic() + seconds
    pause = FIRST_PAUSE_SECONDS
    failures = 0
    while True:
        try:
            result = write()
        except TRANSIENT as exc:
            failures += 1
            if time.monotonic() + pause > deadline:
                raise
            if failures == 1:
                log.warning("%s: Redis unavailable (%s); trying again for up to %.0fs",
                            what, type(exc).__name__, seconds)
            sleep(pause)
            pause = min(MAX_PAUSE_SECONDS, pause * 2)
            continue
        if failures:
            log.info("%s: recorded after %d failed tries", what, failures)
        return result
