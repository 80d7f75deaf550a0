"""The archive's engine from `ARCHIVE_URL`, and what its failures mean in one line.

Every error leaving this package names ARCHIVE_URL, masked, and says what to do: a refused
connection (is PostgreSQL running there?), a missing database (create it), a bad password,
a SQLite file that cannot be opened. Drivers' own messages are long and multi-line, and
may quote the URL: they are folded and masked, never printed as they come.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from cancelq.core.errors import ArchiveUnavailable, ConfigError
from cancelq.core.urls import mask_url

#: Seconds to wait for the database to answer a connection: a down archive is reported
#: (and the archiver pauses) quickly, instead of holding a worker thread.
CONNECT_TIMEOUT_SECONDS = 5

_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"refused", re.I), "connection refused: is PostgreSQL running there?"),
    (re.compile(r'database "([^"]+)" does not exist', re.I),
     "database {0!r} does not exist: create it (createdb), then `cancelq archive migrate`"),
    (re.compile(r"password authentication failed|no password supplied", re.I),
     "the database refused the user or password"),
    (re.compile(r"timeout expired|timed out", re.I), "the database did not answer in time"),
    (re.compile(r"permission denied for (\w+ \w+)", re.I),
     "permission denied for {0}: this role may read and write the tables only; months "
     "and schema changes are the owner's (`cancelq archive migrate`, docs/operations.md)"),
    (re.compile(r"must be owner of table", re.I),
     "only the tables' owner may drop months: run `cancelq archive prune` with the owner's "
     "role (docs/operations.md)"),
    (re.compile(r"lock timeout", re.I),
     "the archive's tables stayed locked by another session (a long query?): try again"),
    (re.compile(r"unable to open database file", re.I),
     "cannot open the SQLite file (does its folder exist, may we write there?)"),
)


def make_engine(url: str) -> Engine:
    """An engine for `url` (`postgresql://` means psycopg 3); nothing is connected yet."""
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername.startswith("postgresql"):
            return create_engine(parsed, pool_pre_ping=True,
                                 connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
        engine = create_engine(parsed)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"ARCHIVE_URL: {mask_url(str(exc))}") from None
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """SQLite: WAL, so the CLI can read while a worker writes, and wait for a lock."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def explain(exc: SQLAlchemyError, url: str) -> ArchiveUnavailable:
    """One line naming ARCHIVE_URL (masked) for a database error."""
    text = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    text = " ".join(text.split())
    reason = f"{type(exc).__name__}: {text[:200]}"
    for pattern, hint in _HINTS:
        found = pattern.search(text)
        if found:
            reason = hint.format(*found.groups())
            break
    return ArchiveUnavailable(f"ARCHIVE_URL {mask_url(url)}: {mask_url(reason)}")
