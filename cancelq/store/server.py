"""What the Redis server says about itself: its INFO and its snapshot schedule.

`cancelq doctor` judges them (is it evicting? does it persist?); this module only asks, so
that the commands a diagnosis sends are in the store with every other.
"""

from __future__ import annotations

from typing import Any

import redis

from cancelq.store.audit import AuditStore


def info(store: AuditStore) -> dict[str, Any]:
    """INFO's fields, by name (raises what the client raises: the caller says "unreachable")."""
    return dict(store.redis.info())


def save_schedule(store: AuditStore) -> str | None:
    """CONFIG GET save: the RDB snapshot rule, or None when empty or when CONFIG is disabled
    (a managed Redis): unknown, not "none"."""
    try:
        value = store.redis.config_get("save").get("save")
    except redis.ResponseError:
        return None
    return str(value) or None
