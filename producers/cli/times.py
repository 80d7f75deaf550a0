"""Times in and out of the CLI, always in UTC: `--since/--until` values, and table cells.

Every table shows UTC and says so, so the values typed back are read as UTC too: a time
without a zone is UTC (not the machine's local time), `Z` or `+02:00` are honoured, and
`15m`, `2h`, `1d`, `1w`, `30s` mean that long ago.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import click

RELATIVE_HELP = "ISO 8601 (no zone means UTC), or an age: 30s, 15m, 2h, 1d, 1w"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")


def parse_time(value: str, *, now: float | None = None) -> float:
    """Epoch seconds for `value`; `ValueError` with a message for anything else."""
    text = value.strip()
    relative = _RELATIVE.match(text.lower())
    if relative:
        amount, unit = relative.groups()
        return (time.time() if now is None else now) - float(amount) * _UNITS[unit]
    try:
        when = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {value[:60]!r} ({RELATIVE_HELP})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class TimeParam(click.ParamType[float]):
    """A click option type for `--since/--until`: a bad value is a usage error naming it."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


def cell_time(ts: float | None, *, now: float | None = None) -> str:
    """`HH:MM:SS` for today (UTC), the date otherwise; '-' for no time."""
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, UTC)
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d")


def full_time(ts: float | None) -> str:
    """`2026-12-01 14:03:22 UTC`, for detail views where there is room."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
