"""worker/transport.py: one Redis client per channel, kombu's unacked bookkeeping unchanged.

Against a real redis-server (the `redis_url` fixture): the acks, the unacked hash and its
index, and the restore of unacked messages are kombu's code and must behave as before; the
only change is how many `redis.Redis` objects the channel builds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

import celeryconfig
from worker.transport import Channel, SentinelTransport, Transport

QUEUE = "transport-test"


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    conn = Connection(redis_url, transport="worker.transport:Transport",
                      transport_options={"visibility_timeout": 1})
    yield conn
    conn.release()


def _publish(conn: Connection, bodies: list[str]) -> None:
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)
    with conn.Producer() as producer:
        for body in bodies:
            producer.publish(body, exchange=queue.exchange, routing_key=QUEUE,
                             declare=[queue], serializer="json")


def _get(conn: Connection, channel: Any) -> Any:
    return channel.basic_get(QUEUE, no_ack=False)


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    builds: list[int] = []
    original: Any = vars(kombu_redis.Channel)["_create_client"]

    def counting(self: Any, asynchronous: bool = False) -> Any:
        if not asynchronous:
            builds.append(1)
        return original(self, asynchronous=asynchronous)

    monkeypatch.setattr(Channel, "_create_client", counting)
    return builds


def test_celeryconfig_uses_this_transport() -> None:
    assert celeryconfig.broker_transport == "worker.transport:Transport"
    assert SentinelTransport.Channel.__name__ == "SentinelChannel"
    assert Transport.Channel is Channel


def test_many_acks_build_one_client(connection: Connection, redis_url: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu 5.7 builds a client per append and per ack; this channel builds one in all."""
    builds = _count_builds(monkeypatch)
    _publish(connection, [f"m{i}" for i in range(20)])
    channel: Any = connection.default_channel
    for _ in range(20):
        message = _get(connection, channel)
        assert message is not None
        message.ack()
    assert len(builds) == 1
    raw = redis.Redis.from_url(redis_url)
    assert raw.hlen("unacked") == 0 and raw.zcard("unacked_index") == 0
    assert raw.llen(QUEUE) == 0


def test_unacked_message_is_tracked_and_restored(connection: Connection, redis_url: str) -> None:
    """A delivered, unacked message sits in kombu's unacked hash and comes back on restore."""
    _publish(connection, ["lost-by-a-dead-worker"])
    channel: Any = connection.default_channel
    message = _get(connection, channel)
    assert message is not None and message.payload == "lost-by-a-dead-worker"
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    assert raw.hlen("unacked") == 1 and raw.llen(QUEUE) == 0
    channel.qos.restore_visible(num=10, interval=1)  # nothing is past the visibility timeout yet
    assert raw.llen(QUEUE) == 0
    tag = str(raw.hkeys("unacked")[0])
    raw.zadd("unacked_index", {tag: 0})  # as if its timeout has passed
    channel.qos.restore_visible(num=10, interval=1)
    assert raw.hlen("unacked") == 0 and raw.llen(QUEUE) == 1
    again = _get(connection, channel)
    assert again is not None and again.payload == "lost-by-a-dead-worker"
    again.ack()


def test_client_is_rebuilt_when_kombu_drops_the_pool(connection: Connection,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fork or a connection error kombu drops the pool; the client follows it."""
    channel: Any = connection.default_channel
    first = channel._channel_client()
    assert channel._channel_client() is first
    channel._disconnect_pools()
    second = channel._channel_client()
    assert second is not first
    assert second.connection_pool is channel.pool
    assert second.ping()
