"""What every cancelq command shares: exit codes, help epilogs, settings, the store, errors.

One set of exit codes for every verb (documented in each `--help` and docs/cli.md):

    0  ok
    1  the operation failed, or the outcome is not the one waited for
    2  usage or configuration error (one line on stderr, nothing done)
    3  timed out (`--wait` ran out before the work was done)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import redis

from cancelq.core.errors import ArchiveUnavailable, ConfigError, InvalidInput, RedisUnavailable
from cancelq.core.lifecycle import Outcome
from cancelq.core.settings import Settings, load_settings
from cancelq.core.urls import mask_url
from cancelq.ops.lookup import JobNotFound
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.connections import probe
from cancelq.store.upgrade import check_schema

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

#: What a cancellation is waited for: anything else final exits 1 after a wait.
WANTED_OUTCOMES = frozenset({Outcome.CANCELLED.value, Outcome.ALREADY_CANCELLED.value})

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 failed or not the outcome waited for,\n"
    "            2 usage or configuration error, 3 timed out."
)
ENV_HELP = "Environment: REDIS_URL, KEY_PREFIX, COLUMNS (table width); see docs/cli.md."

P = ParamSpec("P")
R = TypeVar("R")


def epilog(*examples: str, notes: Sequence[str] = ()) -> str:
    """The end of every `--help`: examples, notes, exit codes, environment (kept verbatim).

    `notes` are the lines of one paragraph; keep them under 78 characters.
    """
    lines = ["\b", "Examples:", *(f"  {example}" for example in examples), ""]
    if notes:
        lines += ["\b", *notes, ""]
    lines += ["\b", EXIT_CODES_HELP, ENV_HELP]
    return "\n".join(lines)


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
        except JobNotFound as exc:
            fail(str(exc), EXIT_FAILED)
        except RedisUnavailable as exc:  # says "REDIS_URL: cannot reach ..." itself: once
            fail(str(exc), EXIT_FAILED)
        except ArchiveUnavailable as exc:
            fail(f"archive unavailable: {exc}", EXIT_FAILED)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            fail(f"cannot reach Redis ({type(exc).__name__}): check REDIS_URL", EXIT_FAILED)
        except redis.RedisError as exc:
            fail(f"Redis error ({type(exc).__name__}: {str(exc)[:200]}): check REDIS_URL",
                 EXIT_FAILED)

    return wrapper


class CancelqGroup(click.Group):
    """click's group, with its usage errors as one line (`cancelq: ...`) and exit code 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare group: its help, as click prints it (exit 2)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "cancelq"
            fail(f"{exc.format_message()} (see: {where} --help)", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", EXIT_FAILED)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


@contextmanager
def store_from_env(
    *, probe_first: bool = True, check_layout: bool = True
) -> Iterator[tuple[Settings, AuditStore]]:
    """Settings and the store; first one quick PING, so a wrong REDIS_URL fails in seconds
    with one line. `doctor` skips the PING: reporting an unreachable Redis is its job. Then
    the store's layout version (`check_schema`): a v1 store is refused, one line saying
    to run `cancelq migrate` (which skips the check: upgrading it is its job)."""
    settings = load_settings()
    if probe_first:
        probe(settings)
    store = audit_store(settings)
    if probe_first and check_layout:
        try:
            check_schema(store)
        except BaseException:
            store.close()
            raise
    try:
        yield settings, store
    finally:
        store.close()


@contextmanager
def reader_from_env() -> Iterator[tuple[Settings, ReadThrough]]:
    """`store_from_env`, with the archive behind it when `ARCHIVE_URL` is set: readers find
    a job in Redis or, once retention deleted it there, in the archive. Without one,
    SQLAlchemy is not even imported (~0.5 s of every reader: `status`, `audit`, `run`,
    `dlq`)."""
    with store_from_env() as (settings, store):
        archive = None
        if settings.archive_url is not None:
            from cancelq.archive.archive import open_archive

            archive = open_archive(settings)
        try:
            yield settings, ReadThrough(store, archive)
        finally:
            if archive is not None:
                archive.close()


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))
