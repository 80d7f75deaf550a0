"""worker/transport.py on a real redis-server: a fetched message is recorded unacked in the
same step that takes it off its list, and kombu's acks, restores and fallbacks still work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.transport import redis as kombu_redis

import celeryconfig
from worker.transport import AtomicQoS, Channel, SentinelTransport, Transport

QUEUE = "transport-test"


class Died(Exception):
    """Stands for a SIGKILL: the worker stops right after the fetch returned."""


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _connection(redis_url: str, transport: str) -> Connection:
    return Connection(redis_url, transport=transport, transport_options={"visibility_timeout": 1})


def _publish(conn: Connection, bodies: list[str]) -> Queue:
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)
    with conn.Producer() as producer:
        for body in bodies:
            producer.publish(body, exchange=queue.exchange, routing_key=QUEUE,
                             declare=[queue], serializer="json")
    return queue


def _consume(conn: Connection, queue: Queue, on_message: Any, rounds: int = 1) -> None:
    with Consumer(conn.default_channel, queues=[queue], on_message=on_message, accept=["json"]):
        for _ in range(rounds):
            try:
                conn.drain_events(timeout=2)
            except TimeoutError:
                pass


def test_celeryconfig_uses_this_transport() -> None:
    assert celeryconfig.broker_transport == "worker.transport:Transport"
    assert SentinelTransport.Channel.__name__ == "SentinelChannel"
    assert Transport.Channel is Channel and Channel.QoS is AtomicQoS


@pytest.mark.parametrize("transport, kept", [
    ("worker.transport:Transport", True),
    # kombu's own: the same death at the same point loses the message (the defect)
    ("redis", False),
])
def test_a_worker_that_dies_right_after_the_fetch_loses_nothing(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, transport: str,
    kept: bool,
) -> None:
    def die(self: Any, message: Any, delivery_tag: Any) -> None:
        raise Died()

    monkeypatch.setattr(AtomicQoS, "append", die)
    monkeypatch.setattr(kombu_redis.QoS, "append", die)
    conn = _connection(redis_url, transport)
    try:
        queue = _publish(conn, ["precious"])
        with pytest.raises(Died):
            _consume(conn, queue, lambda message: None)
        assert raw.llen(QUEUE) == 0  # it was taken off the list either way
        assert (raw.hlen("unacked") == 1) is kept
        assert (raw.zcard("unacked_index") == 1) is kept
    finally:
        conn.release()


def test_recorded_message_is_acked_restored_and_redelivered(
    redis_url: str, raw: redis.Redis
) -> None:
    conn = _connection(redis_url, "worker.transport:Transport")
    try:
        queue = _publish(conn, ["one", "two", "three"])
        got: list[Any] = []
        _consume(conn, queue, got.append, rounds=3)
        assert [m.payload for m in got] == ["one", "two", "three"]
        assert raw.hlen("unacked") == 3 and raw.llen(QUEUE) == 0
        got[0].ack()
        assert raw.hlen("unacked") == 2 and raw.zcard("unacked_index") == 2
        # the two unacked ones come back when their visibility timeout has passed
        for tag in raw.hkeys("unacked"):
            raw.zadd("unacked_index", {str(tag): 0})
        channel: Any = conn.default_channel
        channel.qos.restore_visible(num=10, interval=1)
        assert raw.hlen("unacked") == 0 and raw.llen(QUEUE) == 2
        again: list[Any] = []
        _consume(conn, queue, again.append, rounds=2)
        assert sorted(m.payload for m in again) == ["three", "two"]
        for message in again:
            message.ack()
        assert raw.hlen("unacked") == 0 and raw.zcard("unacked_index") == 0
    finally:
        conn.release()


def test_an_empty_fetch_waits_in_brpop_and_a_lost_script_is_sent_again(
    redis_url: str, raw: redis.Redis
) -> None:
    conn = _connection(redis_url, "worker.transport:Transport")
    try:
        queue = _publish(conn, ["first"])
        got: list[Any] = []
        _consume(conn, queue, got.append, rounds=2)  # a message, then an empty fetch
        channel: Any = conn.default_channel
        assert [m.payload for m in got] == ["first"]
        assert channel._fetch_by_script is False  # empty: the next fetch blocks in BRPOP
        raw.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
        channel._fetch_by_script = True
        _publish(conn, ["second", "third"])
        _consume(conn, queue, got.append, rounds=4)
        assert [m.payload for m in got] == ["first", "second", "third"]
        assert raw.hlen("unacked") == 3 and raw.llen(QUEUE) == 0
    finally:
        conn.release()


def test_an_ack_or_hand_back_on_a_channel_kombu_let_go_of_is_dropped_not_raised(
    redis_url: str, raw: redis.Redis
) -> None:
    conn = _connection(redis_url, "worker.transport:Transport")
    queue = _publish(conn, ["late"])
    got: list[Any] = []
    _consume(conn, queue, got.append)
    channel: Any = conn.default_channel
    # what a reconnect leaves behind for a task thread: no pool, no client to build one from
    channel._disconnect_pools()
    channel.connection.client = None
    with pytest.raises(AttributeError):  # kombu's own QoS: the worker's "unrecoverable error"
        kombu_redis.QoS.ack(channel.qos, got[0].delivery_tag)
    channel.qos.ack(got[0].delivery_tag)
    channel.qos.reject(got[0].delivery_tag, requeue=True)
    with pytest.raises(AttributeError):  # and kombu's hand-back when it closes the channel
        kombu_redis.QoS.restore_unacked(channel.qos)
    channel.qos.restore_unacked()
    assert raw.hlen("unacked") == 1  # still there: restored after the visibility timeout
    channel.connection.client = conn
    conn.release()


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    builds: list[int] = []
    original: Any = vars(kombu_redis.Channel)["_create_client"]

    def counting(self: Any, asynchronous: bool = False) -> Any:
        if not asynchronous:
            builds.append(1)
        return original(self, asynchronous=asynchronous)

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    return builds


def test_many_acks_build_one_client_and_a_dropped_pool_a_new_one(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu 5.7 builds a client per ack; this channel builds one, and one more only when
    kombu has replaced its pool (a fork, a close, a connection error)."""
    builds = _count_builds(monkeypatch)
    conn = _connection(redis_url, "worker.transport:Transport")
    try:
        queue = _publish(conn, [f"m{i}" for i in range(20)])
        got: list[Any] = []
        _consume(conn, queue, got.append, rounds=20)
        for message in got:
            message.ack()
        assert len(got) == 20 and len(builds) == 1
        assert raw.hlen("unacked") == 0 and raw.zcard("unacked_index") == 0
        channel: Any = conn.default_channel
        channel._disconnect_pools()
        _publish(conn, ["after"])
        _consume(conn, queue, got.append)
        got[-1].ack()
        assert len(builds) == 2 and raw.hlen("unacked") == 0
    finally:
        conn.release()
