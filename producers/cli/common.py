"""What every cancelq command shares: settings, the store, errors as one line, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import redis

from cancelq.core.errors import ConfigError, InvalidInput, RedisUnavailable
from cancelq.core.settings import Settings, load_settings
from cancelq.core.urls import mask_url
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.connections import probe

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr (passwords in URLs masked, newlines folded), then exit."""
    click.echo(f"cancelq: {' '.join(mask_url(message).split())}", err=True)
    sys.exit(code)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Bad input, bad config, or no Redis: one line on stderr and an exit code, no traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            fail(f"invalid {exc}")
        except ConfigError as exc:
            fail(f"configuration error: {exc}")
        except RedisUnavailable as exc:
            fail(f"cannot reach Redis: {exc}", EXIT_FAILED)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            fail(f"cannot reach Redis ({type(exc).__name__}): check REDIS_URL", EXIT_FAILED)
        except redis.RedisError as exc:
            fail(f"Redis error ({type(exc).__name__}: {str(exc)[:200]}): check REDIS_URL",
                 EXIT_FAILED)

    return wrapper


@contextmanager
def store_from_env() -> Iterator[tuple[Settings, AuditStore]]:
    settings = load_settings()
    probe(settings)  # one quick PING: a wrong REDIS_URL fails here, in seconds, in one line
    store = audit_store(settings)
    try:
        yield settings, store
    finally:
        store.redis.close()


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def parse_since(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("--since", f"not an ISO date or time: {value!r}") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()
