"""Timestamps as the JSON outputs and summaries show them: UTC, ISO 8601, with a `Z`.

The store keeps times as Unix seconds (floats sort and subtract); people and other programs
read them in this one format, so every `to_json` formats them here.
"""

from __future__ import annotations

import time
from typing import overload


@overload
def iso_utc(ts: float, *, millis: bool = True) -> str: ...


@overload
def iso_utc(ts: None, *, millis: bool = True) -> None: ...


@overload
def iso_utc(ts: float | None, *, millis: bool = True) -> str | None: ...


def iso_utc(ts: float | None, *, millis: bool = True) -> str | None:
    """`2026-12-01T12:00:00.250Z` (`millis=False`: `2026-12-01T12:00:00Z`); None stays None."""
    if ts is None:
        return None
    if not millis:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
