"""Redis clients for the audit store, built from settings, resilient to restarts.

Socket timeouts, keepalive and health checks are on because a Redis that restarts or fails
over can leave half-open sockets that would otherwise block a caller forever
(docs/celery-on-redis.md, "Reconnecting after Redis restarts").

`REDIS_URL` may name Redis Sentinel instead, the way kombu and Celery spell it:
`sentinel://[:password@]h1:26379;sentinel://h2:26379/0` with `REDIS_SENTINEL_MASTER`. The
audit store then asks the sentinels for that master and follows it when it fails over,
like the broker (kombu's sentinel transport) and the result backend (celery's sentinel
backend) configured from the same URL in `celeryconfig`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from cancelq.core.errors import ConfigError, RedisUnavailable
from cancelq.core.settings import Settings
from cancelq.core.urls import mask_url, url_list

#: Every read has a deadline, so a server that accepts and never answers cannot hang a
#: caller; a reply slower than this from a healthy Redis would be a bug of ours (no
#: blocking commands go through these clients).
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
HEALTH_CHECK_INTERVAL_SECONDS = 10
MAX_CONNECTIONS = 200
SENTINEL_SCHEME = "sentinel://"


def redis_client(settings: Settings, *, retries: int = 6) -> redis.Redis:
    """A pooled client on `REDIS_URL`; retries a dropped connection with backoff."""
    if is_sentinel_url(settings.redis_url):
        return sentinel_master_client(settings, retries=retries)
    try:
        return redis.Redis.from_url(settings.redis_url, **_client_options(retries))
    except ValueError as exc:  # redis-py's own URL checks, after ours
        raise ConfigError(f"REDIS_URL: {mask_url(str(exc))}") from None


def _client_options(retries: int = 6) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "max_connections": MAX_CONNECTIONS,
    }


def probe(settings: Settings) -> None:
    """One PING on `REDIS_URL`, no retries: a wrong URL fails here within seconds.

    What cannot be Redis (an HTTP port, a server that takes the connection and then says
    nothing or hangs up, TLS against a plain Redis, a database that does not exist, a refused
    password) is a `ConfigError`; a Redis that refuses or cannot be reached is
    `RedisUnavailable`. Either way one line naming REDIS_URL, password masked.
    """
    client = redis_client(settings, retries=0)
    try:
        client.ping()
    except redis.RedisError as exc:
        error = explain_redis_error(settings.redis_url, exc)
    else:
        return
    finally:
        client.close()
    raise error


def ping(settings: Settings) -> None:
    """One PING on `REDIS_URL`, with the usual retries; raises what the client raises (a
    healthcheck says "unhealthy" and why, it does not explain)."""
    client = redis_client(settings)
    try:
        client.ping()
    finally:
        client.close()


def explain_redis_error(url: str, exc: BaseException) -> ConfigError | RedisUnavailable:
    """The one-line error for a failed first contact with `url` (see `probe`)."""
    where = mask_url(url)
    detail = " ".join(mask_url(str(exc)).split())[:200]
    text = detail.lower()
    if isinstance(exc, redis.AuthenticationError) or "auth" in text and "password" in text:
        return ConfigError(f"REDIS_URL: authentication refused by {where} ({detail})")
    if isinstance(exc, redis.ResponseError) and "db index" in text:
        return ConfigError(f"REDIS_URL: no such database on the server ({detail}): {where}")
    if isinstance(exc, redis.exceptions.InvalidResponse) or "protocol error" in text:
        return ConfigError(
            f"REDIS_URL: {where} did not answer as Redis ({detail}); an HTTP port?"
        )
    if "ssl" in text or "tls" in text or "certificate" in text:
        return ConfigError(
            f"REDIS_URL: TLS failed with {where} ({detail}); rediss:// against a plain Redis?"
        )
    if isinstance(exc, redis.TimeoutError) and "connecting" not in text:
        # it took the connection and said nothing: a Redis answers PING at once, even busy
        hint = ("rediss:// against a plain Redis?" if url.strip().lower().startswith("rediss:")
                else "not a Redis: an HTTP port?")
        return ConfigError(
            f"REDIS_URL: no answer from {where} within {SOCKET_TIMEOUT_SECONDS:.0f} s ({hint})"
        )
    if isinstance(exc, redis.ConnectionError) and "closed by server" in text:
        # it took the connection and hung up without a word: a Redis always answers first
        return ConfigError(f"REDIS_URL: {where} hung up without answering; not a Redis?")
    if isinstance(exc, redis.TimeoutError) and _tls_to_a_listener(url):
        # the port took a TCP connection at once; only the TLS handshake never ended
        return ConfigError(f"REDIS_URL: TLS handshake with {where} never ended (the port "
                           "answers TCP): rediss:// against a plain Redis?")
    if isinstance(exc, redis.TimeoutError):
        return RedisUnavailable(f"REDIS_URL: cannot reach {where} within "
                                f"{CONNECT_TIMEOUT_SECONDS:.0f} s (down, or unreachable)")
    if isinstance(exc, redis.ConnectionError):
        return RedisUnavailable(f"REDIS_URL: cannot reach {where} ({detail})")
    return ConfigError(f"REDIS_URL: {where}: {type(exc).__name__}: {detail}")


def _tls_to_a_listener(url: str) -> bool:
    """For a rediss:// URL whose connection timed out: does its port take a plain TCP
    connection? Then the server is up and the TLS handshake is what hung (a plain Redis
    waits for a command, not a ClientHello): a configuration error, not an outage."""
    if not url.strip().lower().startswith("rediss:"):
        return False
    try:
        split = urlsplit(url.strip())
        host, port = split.hostname, split.port or 6379
    except ValueError:
        return False
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME)


@dataclass(frozen=True, slots=True)
class SentinelURL:
    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """`sentinel://[user:pass@]h1:26379;sentinel://h2:26379/0`: every host, the db, the auth.

    As in kombu, the credentials (of the first part that has them) are the master's, and
    the db comes from the part that names one.
    """
    hosts: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for part in url_list(url):
        if not is_sentinel_url(part):
            raise ConfigError(
                f"REDIS_URL: every ';'-separated part must be sentinel:// ({mask_url(part)!r})"
            )
        split = urlsplit(part)
        try:
            port = split.port or 26379
        except ValueError:
            raise ConfigError(f"REDIS_URL: bad port in {mask_url(part)!r}") from None
        if not split.hostname:
            raise ConfigError(f"REDIS_URL: no host in {mask_url(part)!r}")
        hosts.append((split.hostname, port))
        if split.password is not None and password is None:
            password = unquote(split.password)
            username = unquote(split.username) if split.username else None
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigError(f"REDIS_URL: db must be a number ({mask_url(part)!r})")
            db = int(path)
    if not hosts:
        raise ConfigError("REDIS_URL: no sentinel host")
    return SentinelURL(tuple(hosts), db, username, password)


def sentinel_master_client(settings: Settings, *, retries: int = 6) -> redis.Redis:
    """A client on the master the sentinels name, re-resolved after a failover."""
    master = settings.redis_sentinel_master
    if not master:
        raise ConfigError("REDIS_SENTINEL_MASTER: required when REDIS_URL names Sentinel")
    parsed = parse_sentinel_url(settings.redis_url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.hosts),
        sentinel_kwargs={
            "socket_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        },
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **_client_options(retries),
    )
    return client

