"""`producers.cli.times`: UTC in, UTC out."""

from __future__ import annotations

import pytest

from producers.cli.times import cell_time, full_time, parse_time

NOW = 1_764_590_400.0  # 2025-12-01T12:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-12-01T12:00:00Z", NOW),
    ("2025-12-01T12:00:00", NOW),  # naive: UTC, not the machine's zone
    ("2025-12-01 13:00:00+01:00", NOW),
    ("2025-12-01T07:00:00-05:00", NOW),
    ("2025-12-01", NOW - 12 * 3600),
    ("15m", NOW - 900),
    ("2h", NOW - 7200),
    ("1d", NOW - 86_400),
    ("1.5h", NOW - 5400),
    ("30s", NOW - 30),
    ("1w", NOW - 604_800),
])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "now-ish", "15", "15 minutes", "2h ago", "-1d", "2025-13-01"])
def test_parse_time_refuses_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match="15m"):
        parse_time(text, now=NOW)


def test_cell_time_is_the_clock_today_and_the_date_otherwise() -> None:
    assert cell_time(NOW + 3661, now=NOW) == "13:01:01"
    assert cell_time(NOW - 86_400, now=NOW) == "2025-11-30"
    assert cell_time(None) == "-"
    assert full_time(NOW) == "2025-12-01 12:00:00 UTC"
