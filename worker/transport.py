"""kombu's Redis transport with one Redis client per channel instead of one per operation.

Why: kombu 5.7's `Channel.conn_or_acquire()` builds a NEW `redis.Redis` for every operation
that is not given a client: each message's unacked bookkeeping (`QoS.append`), each ack, each
reject, each unacked sweep. A `redis.Redis` is cheap to talk through but costly to build (it
fills a case-insensitive dict of response callbacks, about a hundred entries), and py-spy put
that construction at 13% of the whole worker's CPU on the real-time path. The connections
themselves already come from the channel's pool, so nothing is gained by the new object.

`redis.Redis` over a `ConnectionPool` is thread-safe (each command borrows a connection from
the pool for its duration), so one client per channel serves every pool thread. The client is
rebuilt whenever the channel's pool is (kombu drops the pool after a fork, on close and on a
connection error), so it never talks through a pool kombu has discarded. Everything else —
the unacked hash and index, the visibility-timeout restore, the acks — is kombu's own code.

celeryconfig sets `broker_transport` to `Transport` (or `SentinelTransport` with
REDIS_SENTINEL_MASTER); the URL's host, port, database and password are read as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class _OneClient:
    """`conn_or_acquire` that hands out the channel's one sync client (see the module doc)."""

    _one_client: Any = None
    _one_client_pool: Any = None

    def _channel_client(self) -> Any:
        """The cached client, rebuilt when kombu has replaced the channel's pool."""
        pool = self.pool  # type: ignore[attr-defined]  # kombu's property: builds it if dropped
        if self._one_client is None or self._one_client_pool is not pool:
            self._one_client = self._create_client()  # type: ignore[attr-defined]
            self._one_client_pool = pool
        return self._one_client

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The given client, else the channel's one client (kombu's builds a new one each time)."""
        yield client if client else self._channel_client()


class Channel(_OneClient, kombu_redis.Channel):
    """kombu's Redis channel, one sync client per channel."""


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, one sync client per channel (follows the master's pool)."""


class Transport(kombu_redis.Transport):
    """The `redis://` transport with `Channel` above."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """The `sentinel://` transport with `SentinelChannel` above."""

    Channel = SentinelChannel
