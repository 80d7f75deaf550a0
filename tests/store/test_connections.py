"""`cancelq.store.connections`: a wrong REDIS_URL fails in seconds, in one line naming it.

Against tiny servers that are not Redis (tests/fakeservers.py): one answering like an HTTP
server, one accepting and never answering, a closed port, TLS against plain TCP.
"""

from __future__ import annotations

import threading

import pytest

from cancelq.core.errors import ConfigError, RedisUnavailable
from cancelq.core.settings import load_settings
from cancelq.store import connections
from cancelq.store.connections import explain_redis_error, probe, redis_client
from producers.dev.local_redis import free_port
from tests.fakeservers import not_redis


def probed(url: str, **env: str) -> BaseException | None:
    """`probe` in a thread with a generous deadline: a hang is a failure, not a stuck suite."""
    settings = load_settings(REDIS_URL=url, **env)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            probe(settings)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome, f"probe of {url} hung"
    return outcome[0]


def test_timeouts_keep_a_first_contact_under_ten_seconds() -> None:
    """One connect plus one read, no retries: the bound on a wrong REDIS_URL."""
    assert connections.CONNECT_TIMEOUT_SECONDS + connections.SOCKET_TIMEOUT_SECONDS < 10
    client = redis_client(load_settings(), retries=0)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == connections.SOCKET_TIMEOUT_SECONDS
    assert kwargs["socket_connect_timeout"] == connections.CONNECT_TIMEOUT_SECONDS
    client.close()


def test_an_http_port_is_a_config_error_naming_redis_url() -> None:
    with not_redis("http") as port:
        error = probed(f"redis://:pw-http@127.0.0.1:{port}/0")
    assert isinstance(error, ConfigError)
    message = str(error)
    assert message.startswith("REDIS_URL: ") and "did not answer as Redis" in message
    assert "pw-http" not in message and "\n" not in message


def test_a_server_that_never_answers_is_not_a_redis_in_one_line() -> None:
    """A Redis answers PING at once: one that takes the connection and stays silent is
    something else (a worker must refuse to start on it, not retry forever)."""
    with not_redis("silent") as port:
        error = probed(f"redis://127.0.0.1:{port}/0")
    assert isinstance(error, ConfigError)
    assert str(error).startswith("REDIS_URL: no answer from") and "\n" not in str(error)


def test_rediss_against_a_plain_server_fails_with_one_line() -> None:
    with not_redis("http") as port:
        error = probed(f"rediss://127.0.0.1:{port}/0")
    assert isinstance(error, ConfigError | RedisUnavailable)
    assert str(error).startswith("REDIS_URL: ") and "rediss://" in str(error)


def test_a_closed_port_is_unavailable_with_the_password_masked() -> None:
    error = probed(f"redis://:pw-closed@127.0.0.1:{free_port()}/0")
    assert isinstance(error, RedisUnavailable)
    assert "pw-closed" not in str(error) and "cannot reach" in str(error)


@pytest.mark.integration
def test_a_database_the_server_does_not_have_is_a_config_error(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    error = probed(f"{base}/99")
    assert isinstance(error, ConfigError)
    assert str(error).startswith("REDIS_URL: no such database")
    assert probed(f"{base}/0") is None


def test_sentinel_errors_are_masked() -> None:
    url = f"sentinel://:pw-sentinel@127.0.0.1:{free_port()}/0"
    error = probed(url, REDIS_SENTINEL_MASTER="mymaster")
    assert error is not None and "pw-sentinel" not in str(error)
    assert str(error).startswith("REDIS_URL: ")


def test_explain_never_shows_a_password() -> None:
    exc = ConnectionError("Error connecting to redis://:pw-x@h:1/0")
    assert "pw-x" not in str(explain_redis_error("redis://:pw-x@h:1/0", exc))
