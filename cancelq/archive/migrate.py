"""The archive's schema version: bring it to the code's (`cancelq archive migrate`), or
refuse to write to one that is behind, in one line that says what to run.

Alembic is driven from here with a connection we opened, never from an ini file: the
migrations ship inside the package (`migrations/`), so an installed cancelq migrates its
own archive with nothing else on disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from cancelq.archive.database import explain
from cancelq.archive.partitions import ensure_months, months_from
from cancelq.core.errors import ArchiveUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

#: Monthly partitions made ahead by every `migrate` (this month and the next ones): a
#: writer role without DDL rights archives into them; run `migrate` monthly (or give
#: the writer the tables) to stay ahead (docs/operations.md).
PREPARED_MONTHS = 13

#: Any fixed number: the advisory lock two migrating processes take in turn.
MIGRATE_LOCK = 836_016

#: Alembic's version table, named for us so it never meets another application's.
VERSION_TABLE = "cancelq_alembic_version"


def _config() -> Config:
    # Alembic is imported when a schema is read or changed, not with the CLI: it costs
    # about half a second of every `cancelq` command otherwise
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("cancelq.archive").joinpath("migrations")))
    return config


@cache
def head() -> str:
    """The schema version this code writes and reads."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None, "the archive ships at least one migration"
    return found


def current(conn: Connection) -> str | None:
    """The version the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the code's version and prepare the coming months' partitions; returns
    (version before, version now). A database error is one `ArchiveUnavailable` line."""
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # workers starting together: one at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
            before = current(conn)
            config = _config()
            config.attributes["connection"] = conn
            from alembic import command

            command.upgrade(config, "head")
            now = datetime.now(UTC)
            ensure_months(conn, months_from(now.year, now.month, PREPARED_MONTHS))
    except SQLAlchemyError as exc:
        raise explain(exc, engine.url.render_as_string(hide_password=False)) from None
    return before, head()


def require_current(conn: Connection, where: str) -> None:
    """Raise `ArchiveUnavailable` unless the schema is the code's version."""
    found, wanted = current(conn), head()
    if found != wanted:
        at = f"at version {found}" if found else "not migrated"
        raise ArchiveUnavailable(
            f"ARCHIVE_URL {where}: the archive schema is {at}, this cancelq needs {wanted}: "
            "run `cancelq archive migrate`"
        )
