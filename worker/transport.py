"""kombu's Redis transport, with a fetch that takes a message and records it unacked in one step.

Why: kombu's Redis channel fetches with `BRPOP`, which removes the message from its list, and
only then, back in the worker, copies it into the `unacked` hash that the visibility-timeout
sweep restores from. In between, the message lives only in the worker's socket buffer and
memory. A worker SIGKILLed in that window loses the message for good: no list, no unacked
entry, nothing any sweep can find. The window is widest exactly when kills hurt most: while
the worker is busy (its event loop competes with dozens of task threads for the GIL) and while
it fetches back to back through a backlog, and `worker_disable_prefetch` can hold a popped
reply unread in the socket until a thread is free. About one SIGKILL in four lost a job this
way (docs/celery-on-redis.md).

Here, while messages keep coming, the channel fetches with one Lua script (`FETCH_SCRIPT`)
that pops from the first non-empty list, in the same order `BRPOP` would, and writes the
`unacked` entry and its index score in the same atomic step, exactly as kombu's
`QoS.append` writes them. The message is never in a state the sweep cannot see. The script
cannot block, so once a fetch finds every list empty the channel falls back to one plain
`BRPOP` (it waits without spinning); the message that wakes it is the only one fetched the
old way, and the worker is idle then, so its window is a fraction of a millisecond. The
reconciler (`cancelq.store.lost`) covers whatever is lost still.

It also keeps an acknowledgement that races a reconnect from killing the worker: when the
broker connection drops, Celery closes the channel while task threads still run; their late
`ack` then reaches kombu's `conn_or_acquire` on a closed channel and fails with an
`AttributeError` that Celery treats as unrecoverable. The message is already back in the
queue (or in `unacked`, restored after the visibility timeout); its job's outcome is
recorded, so the second copy is acked without a call. Here that ack is logged and dropped,
and so is the hand-back of unacked messages that kombu tries when it closes such a channel.

And it talks through one Redis client per channel (`_OneClient`): kombu 5.7's
`conn_or_acquire()` builds a new `redis.Redis` for every ack, reject and unacked sweep, and a
`redis.Redis` is costly to build (a case-insensitive dict of ~100 response callbacks): py-spy
put that at ~12% of the worker's CPU on the real-time path. The connections already come from
the channel's pool, and a `redis.Redis` over a pool is thread-safe, so one client serves every
task thread; it is rebuilt whenever kombu replaces the pool (after a fork, a close, a
connection error). (It was tried once before the atomic fetch and taken out when the SIGKILL
test failed one run in four; that failure was the fetch window above, not this client.)

celeryconfig sets `broker_transport` to `Transport` (or `SentinelTransport` with
REDIS_SENTINEL_MASTER); URLs, options and every other behaviour are kombu's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ResponseError

log = logging.getLogger("cancelq.transport")

#: KEYS: the unacked hash, its index, then the queue lists in `BRPOP`'s order.
#: ARGV: the time to score the unacked entry with (the client's clock, as kombu's sweep reads).
#: Returns nil, or {list, message, recorded}: recorded 0 when the message carries no string
#: delivery tag (not kombu's): the worker then records it itself, as kombu would.
FETCH_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then
  return redis.error_reply('cancelq fetch: ' .. KEYS[1] .. ' is a ' .. kind)
end
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    local props = ok and type(message) == 'table' and message['properties']
    local tag = type(props) == 'table' and props['delivery_tag']
    local info = type(props) == 'table' and props['delivery_info']
    if type(tag) ~= 'string' or type(info) ~= 'table' then
      return {KEYS[i], item, 0}
    end
    local entry = '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ','
      .. cjson.encode(info['routing_key']) .. ']'
    redis.call('ZADD', KEYS[2], ARGV[1], tag)
    redis.call('HSET', KEYS[1], tag, entry)
    return {KEYS[i], item, 1}
  end
end
return false
"""
FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode()).hexdigest()


class AtomicQoS(kombu_redis.QoS):
    """kombu's ack emulation; skips the unacked write the fetch script already made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: delivery tags whose unacked entry the fetch script wrote
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: Any) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # the in-memory part only
            return
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        try:
            super().ack(delivery_tag)
        except AttributeError:
            if not _transport_gone(self.channel):
                raise
            _dropped("ack", delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            if not _transport_gone(self.channel):
                raise
            _dropped("reject", delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        """At channel close kombu pushes this worker's unacked messages back; on a channel
        whose connection is already gone that fails the same way (and ended the worker).
        They stay in `unacked`, and the sweep restores them after the visibility timeout."""
        try:
            super().restore_unacked(client)
        except AttributeError:
            if not _transport_gone(self.channel):
                raise
            log.warning("broker connection was replaced before this worker's %d unacked "
                        "message(s) could be handed back; they come back after the visibility "
                        "timeout", len(self._delivered or ()))


def _transport_gone(channel: Any) -> bool:
    """True once kombu has let go of the channel's connection (a reconnect is under way)."""
    transport = getattr(channel, "connection", None)
    return transport is None or getattr(transport, "client", None) is None


def _dropped(what: str, delivery_tag: Any) -> None:
    log.warning("broker connection was replaced before the %s of message %s; the message "
                "comes back (restored or redelivered) and its recorded job is not called "
                "again", what, delivery_tag)


class _AtomicFetch:
    """Channel mixin: fetch with `FETCH_SCRIPT` while messages keep coming (module doc)."""

    #: the next fetch uses the script (set by a message, cleared by an empty fetch)
    _fetch_by_script = True
    #: the reply pending on the BRPOP connection is the script's
    _script_pending = False
    #: EVALSHA may be used (the script was sent whole once on this connection's server)
    _script_known = False
    #: the server refused the script (not NOSCRIPT): this channel fetches as kombu does
    _script_refused = False

    def _brpop_start(self, timeout: Any = None) -> None:
        chan: Any = self
        if not self._fetch_by_script or self._script_refused or chan.global_keyprefix:
            super()._brpop_start(timeout)  # type: ignore[misc]
            return
        queues = chan._queue_cycle.consume(len(chan.active_queues))
        if not queues:
            return
        keys = [chan._q_for_pri(q, pri) for pri in chan.priority_steps for q in queues]
        head = ["EVALSHA", FETCH_SHA] if self._script_known else ["EVAL", FETCH_SCRIPT]
        chan._in_poll = chan.client.connection
        chan._brpop_sent_at = None  # no server-side timeout: the health check is BRPOP's
        self._script_pending = True
        chan.client.connection.send_command(
            *head, 2 + len(keys), chan.unacked_key, chan.unacked_index_key, *keys, time())

    def _brpop_read(self, **options: Any) -> bool:
        if not self._script_pending:
            got = bool(super()._brpop_read(**options))  # type: ignore[misc]
            self._fetch_by_script = got  # a message woke the BRPOP: more may be coming
            return got
        self._script_pending = False
        chan: Any = self
        try:
            reply = self._read_script_reply(options)
            if not reply:
                self._fetch_by_script = False  # every list is empty: wait in BRPOP
                raise Empty()
            dest, item, recorded = reply
            dest = bytes_to_str(dest).rsplit(chan.sep, 1)[0]
            chan._queue_cycle.rotate(dest)
            message = loads(bytes_to_str(item))
            if recorded:
                chan.qos.recorded.add(message["properties"]["delivery_tag"])
            chan.connection._deliver(message, dest)
            return True
        finally:
            chan._in_poll = None
            chan._flush_brpop_reauth()

    def _read_script_reply(self, options: dict[str, Any]) -> Any:
        chan: Any = self
        try:
            reply = chan.client.parse_response(chan.client.connection, "EVALSHA", **options)
        except chan.connection_errors:
            chan.client.connection.disconnect()  # as kombu's BRPOP read: reconnect next time
            self._script_known = False
            raise
        except ResponseError as exc:
            self._script_known = False
            if "NOSCRIPT" not in str(exc):  # not a Redis we can run it on: kombu's way
                log.warning("broker fetch script refused (%s); fetching with BRPOP", exc)
                self._script_refused = True
            raise Empty() from None
        self._script_known = True
        return reply


class _OneClient:
    """Channel mixin: `conn_or_acquire` hands out the channel's one sync client (module doc)."""

    _one_client: Any = None
    _one_client_pool: Any = None

    def _channel_client(self) -> Any:
        """The cached client, rebuilt when kombu has replaced the channel's pool."""
        chan: Any = self
        pool = chan.pool  # kombu's property: builds the pool again if it was dropped
        client, built_on = self._one_client, self._one_client_pool
        if client is None or built_on is not pool:
            client = chan._create_client()
            self._one_client, self._one_client_pool = client, pool
        return client

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The given client, else the channel's one client (kombu builds one per call)."""
        yield client if client else self._channel_client()


class Channel(_OneClient, _AtomicFetch, kombu_redis.Channel):
    """kombu's Redis channel with the atomic fetch and one client."""

    QoS = AtomicQoS


class SentinelChannel(_OneClient, _AtomicFetch, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with the atomic fetch and one client (follows the master's
    pool)."""

    QoS = AtomicQoS


class Transport(kombu_redis.Transport):
    """The `redis://` transport with `Channel` above."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """The `sentinel://` transport with `SentinelChannel` above."""

    Channel = SentinelChannel

