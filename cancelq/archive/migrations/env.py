"""Alembic's entry point for the archive's migrations: always given an open connection by
`cancelq.archive.migrate` (never a URL from an ini file), so the same masked, one-line
error handling covers migrations too."""

from __future__ import annotations

from alembic import context

from cancelq.archive.migrate import VERSION_TABLE
from cancelq.archive.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
