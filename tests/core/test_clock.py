"""`cancelq.core.clock.iso_utc`: the one timestamp format of every JSON output."""

from __future__ import annotations

from cancelq.core.clock import iso_utc

# 2026-12-01T12:00:00Z
NOON = 1_796_126_400.0


def test_milliseconds_by_default_truncated_not_rounded() -> None:
    assert iso_utc(NOON) == "2026-12-01T12:00:00.000Z"
    assert iso_utc(NOON + 0.2509) == "2026-12-01T12:00:00.250Z"
    assert iso_utc(NOON + 59.9999) == "2026-12-01T12:00:59.999Z"


def test_whole_seconds_when_asked() -> None:
    assert iso_utc(NOON + 0.75, millis=False) == "2026-12-01T12:00:00Z"


def test_none_stays_none() -> None:
    assert iso_utc(None) is None
