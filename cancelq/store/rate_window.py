"""Where the global rate limit keeps its state: the moving window and the bulk turn book.

The `limits` library keeps its moving window in Redis itself, on the store's connection pool
under the store's prefix; the turn book is one script (`lua/reserve_slot.lua`). What the
limit allows and who waits is `cancelq.pipeline.rate_limit`'s.
"""

from __future__ import annotations

import redis
from limits.storage import RedisStorage

from cancelq.store.audit import AuditStore
from cancelq.store.scripts import Scripts


def moving_window_storage(store: AuditStore) -> RedisStorage:
    """The `limits` storage of the window: the store's own connections, its own prefix."""
    return RedisStorage(
        "redis://", connection_pool=store.redis.connection_pool, key_prefix=store.keys.rate_limit
    )


class TurnBook:
    """The shared timeline of deferred bulk turns (`lua/reserve_slot.lua`)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.key = key
        self._scripts = Scripts(client)

    @classmethod
    def of(cls, store: AuditStore) -> TurnBook:
        return cls(store.redis, store.keys.bulk_turns)

    def book(self, interval: float, earliest: float) -> float:
        """Seconds from now until this job's turn."""
        return float(self._scripts("reserve_slot", [self.key, repr(interval), repr(earliest)]))
