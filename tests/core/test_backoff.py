"""`cancelq.core.backoff`: full jitter, the cap, and Retry-After in both of its forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cancelq.core.backoff import compute_backoff, next_delay, parse_retry_after

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


def ceiling(attempt: int, base: float = 2.0, cap: float = 300.0) -> float:
    return compute_backoff(attempt, base_seconds=base, max_seconds=cap, rand=lambda: 1.0)


def test_full_jitter_bounds() -> None:
    assert compute_backoff(3, base_seconds=2.0, max_seconds=300.0, rand=lambda: 0.0) == 0.0
    assert compute_backoff(3, base_seconds=2.0, max_seconds=300.0, rand=lambda: 1.0) == 8.0
    assert compute_backoff(3, base_seconds=2.0, max_seconds=300.0, rand=lambda: 0.25) == 2.0


def test_exponential_growth() -> None:
    assert [ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert [ceiling(n, base=0.5) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_cap() -> None:
    assert ceiling(9) == 300.0  # 2 * 2**8 = 512 > 300
    assert ceiling(8) == 256.0
    assert ceiling(10_000) == 300.0  # no overflow for absurd attempt numbers


def test_default_rand_stays_within_the_window() -> None:
    delays = [compute_backoff(4, base_seconds=1.0, max_seconds=300.0) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a constant


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        compute_backoff(0, base_seconds=1.0, max_seconds=10.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="padded"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="decimal"),
        pytest.param("-5", 0.0, id="negative-seconds"),
    ],
)
def test_retry_after_seconds(header: str, expected: float) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=NOW) == 30.0
    later = NOW - timedelta(seconds=90)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=later) == 120.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "tomorrow at noon", "nan", "Wed, 99 Foo 2015 07:28:00 GMT"],
)
def test_retry_after_garbage_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_next_delay_prefers_retry_after() -> None:
    delay = next_delay(1, retry_after=42.0, base_seconds=2.0, max_seconds=300.0,
                       rand=lambda: 1.0)
    assert delay == 42.0


def test_next_delay_caps_retry_after() -> None:
    delay = next_delay(1, retry_after=3600.0, base_seconds=2.0, max_seconds=300.0,
                       rand=lambda: 1.0)
    assert delay == 300.0


def test_next_delay_without_retry_after_is_backoff() -> None:
    assert next_delay(3, retry_after=None, base_seconds=2.0, max_seconds=300.0,
                      rand=lambda: 0.5) == 4.0
    assert next_delay(3, retry_after=0.0, base_seconds=2.0, max_seconds=300.0,
                      rand=lambda: 0.5) == 0.0  # "retry now" is a wish too
