"""A write on a Sentinel-managed primary counts only once a replica has it, or the primary is
confirmed to still be the primary.

Redis replicates asynchronously. In a failover Sentinel promotes the replica first and demotes
the old primary a moment later; in between, the old primary still takes writes and answers
"OK", and those writes vanish when it becomes a replica. Under a bulk run that was two thirds
of the jobs in flight: their `begin` or `finish` was acknowledged, then lost, so the answer
Care360 gave was never recorded, the lease ran out and the job was called again (498 calls for
300 jobs). `redis-py` keeps talking to the old primary until a connection fails.

So on a Sentinel deployment the store's job writes (`begin`, `finish`) go in one pipeline with
`WAIT 1 <ms>`. A replica's acknowledgement means the write survives a failover. No
acknowledgement within the wait means either no replica is connected (a primary alone: the
write stands, nothing better is possible) or the primary was just replaced: Sentinel is asked,
and if it names another primary, `PrimaryMoved` (a connection error) is raised. The write is
idempotent, so the caller runs it again, and the next connection goes to the new primary
(`cancelq.store.outage` for a finish; a begin hands its message back). Without Sentinel,
nothing is added.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: how long a write waits for a replica's acknowledgement (a healthy replica: well under 1 ms)
WAIT_MS = 100
#: with no acknowledgement, how long Sentinel is watched for a new primary before the write
#: is taken as safe (Sentinel names the new primary within about a second of promoting it)
WATCH_SECONDS = 2.0
#: a primary that stayed alone that long is not asked to wait again for this long
ALONE_SECONDS = 30.0


class PrimaryMoved(RedisConnectionError):
    """The write went to a primary that Sentinel no longer names: it may be lost."""


class Replication:
    """What a Sentinel-managed client needs to confirm its writes (nothing for other clients)."""

    def __init__(self, client: redis.Redis, wait_ms: int = WAIT_MS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        pool: Any = client.connection_pool
        self.pool = pool if hasattr(pool, "get_master_address") else None
        self.wait_ms = wait_ms
        self.sleep = sleep
        self._alone_until = 0.0

    @property
    def active(self) -> bool:
        return self.pool is not None

    def add_wait(self, pipe: Any) -> bool:
        """Queue the `WAIT` after a pipeline's writes (on their connection); False when not
        (no Sentinel, or a primary known to be alone)."""
        if self.pool is None or time.monotonic() < self._alone_until:
            return False
        pipe.execute_command("WAIT", 1, self.wait_ms)
        return True

    def confirm(self, replies: list[Any], waited: bool) -> list[Any]:
        """The writes' replies, `WAIT`'s (the last, if `waited`) taken off and `check`ed."""
        if not waited:
            return replies
        *writes, acked = replies
        self.check(acked)
        return writes

    def check(self, acked: Any) -> None:
        """Raise `PrimaryMoved` when no replica acknowledged and Sentinel names another
        primary than the one written to, now or within `WATCH_SECONDS`; a primary that stays
        the primary that long without a replica is alone: its writes stand."""
        if self.pool is None:
            return
        if isinstance(acked, Exception):
            raise acked
        if int(acked) >= 1:
            return
        written_to = self.pool.master_address
        deadline = time.monotonic() + WATCH_SECONDS
        while True:
            current = self.pool.get_master_address()  # drops idle connections if it moved
            if written_to is not None and tuple(current) != tuple(written_to):
                raise PrimaryMoved(f"primary moved from {written_to} to {current} "
                                   "during a write")
            if time.monotonic() >= deadline:
                self._alone_until = time.monotonic() + ALONE_SECONDS
                return
            self.sleep(0.1)
