"""`CLEANUP_SCHEDULE` -> Celery beat's schedule. Pure: `celeryconfig` imports it.

Accepted, in UTC (Celery's default timezone):
    "*/15 * * * *"       a five-field cron expression: minute hour day-of-month month weekday
    "@hourly" "@daily" "@midnight" "@weekly" "@monthly" "@yearly" "@annually"
    "@every 30s"         a fixed interval (s, m or h): for demos and tests, as cron cannot say
                         "every few seconds"
Unset or empty: beat runs with no entries (`celery -A worker beat` still starts).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from celery.schedules import crontab, schedule

from cancelq.core.errors import ConfigError
from cancelq.core.settings import Settings
from cancelq.store.queues import Queues

CLEANUP_TASK = "cleanup.process_inbox"
CLEANUP_ENTRY = "cleanup-inbox"

_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*([smh])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_schedule(expression: str) -> crontab | schedule:
    """A Celery schedule for the expression; `ConfigError` naming CLEANUP_SCHEDULE if bad."""
    text = " ".join(expression.split()).lower()
    every = _EVERY.match(text)
    if every:
        seconds = float(every.group(1)) * _UNIT_SECONDS[every.group(2)]
        if seconds <= 0:
            raise ConfigError(f"CLEANUP_SCHEDULE: the interval must be positive ({expression!r})")
        return schedule(timedelta(seconds=seconds))
    text = _NICKNAMES.get(text, text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise ConfigError(
            "CLEANUP_SCHEDULE: expected a 5-field cron expression "
            f"(minute hour day-of-month month weekday), @daily-style or '@every 30s' "
            f"(got {expression!r})"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"CLEANUP_SCHEDULE: {exc} (got {expression!r})") from None


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule`: the cleanup entry, or nothing when no schedule is set."""
    if not settings.cleanup_schedule or not settings.cleanup_schedule.strip():
        return {}
    if settings.cleanup_inbox is None:
        raise ConfigError("CLEANUP_INBOX: required when CLEANUP_SCHEDULE is set")
    return {
        CLEANUP_ENTRY: {
            "task": CLEANUP_TASK,
            "schedule": parse_schedule(settings.cleanup_schedule),
            # a small task that enqueues: it goes with real-time work, never behind a backlog
            "options": {"queue": Queues.from_settings(settings).realtime},
        }
    }
