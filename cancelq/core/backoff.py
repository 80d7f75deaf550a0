"""How long a job waits before its next attempt.

Full jitter (delay drawn uniformly from [0, min(cap, base * 2**(n-1))]) spreads a burst of
failures over the window instead of re-synchronising them against a recovering API. A
server's `Retry-After` wins over our own guess, but never beyond the cap: the cap is what
keeps a retry shorter than the broker's visibility timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def compute_backoff(
    attempt: int,
    *,
    base_seconds: float,
    max_seconds: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay after the `attempt`-th failed call (1-based), full jitter, in seconds."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(max_seconds, base_seconds * 2.0 ** min(attempt - 1, 64))
    return ceiling * rand()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def next_delay(
    attempt: int,
    *,
    retry_after: float | None,
    base_seconds: float,
    max_seconds: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before the next attempt: the server's wish if it said one, capped."""
    if retry_after is not None:
        return min(max_seconds, retry_after)
    return compute_backoff(attempt, base_seconds=base_seconds, max_seconds=max_seconds, rand=rand)
