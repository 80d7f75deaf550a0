"""`cancelq migrate`: the audit store in Redis rewritten in this version's layout (v1 -> v2).

Stop the workers and producers first (docs/upgrade.md): their queued messages wait in the
broker lists. Safe to run twice, and resumes where an interrupted run stopped.
"""

from __future__ import annotations

import click

from cancelq.store.keys import SCHEMA_VERSION
from cancelq.store.upgrade import Migrated, schema_version
from cancelq.store.upgrade import migrate as migrate_store
from producers.cli.common import epilog, one_line_errors, print_json, store_from_env


@click.command(epilog=epilog(
    "cancelq migrate",
    "cancelq migrate --json",
    notes=["Stop the workers and producers first; safe to rerun (docs/upgrade.md)."],
))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"before", "now", "jobs", "already", "leftovers"}.')
@one_line_errors
def migrate(as_json: bool) -> None:
    """Rewrite the Redis audit store in this version's layout (v1 -> v2), job by job."""
    with store_from_env(check_layout=False) as (_, store):
        before = schema_version(store)

        def progress(done: Migrated) -> None:
            if not as_json:
                click.echo(f"  {done.jobs:,} jobs rewritten, {done.already:,} already v2",
                           err=True)

        done = migrate_store(store, progress=progress)
    if as_json:
        print_json({"before": before, "now": SCHEMA_VERSION, "jobs": done.jobs,
                    "already": done.already, "leftovers": done.leftovers})
    else:
        click.echo(f"audit store: schema v{before} -> v{SCHEMA_VERSION}: {done.jobs:,} jobs "
                   f"rewritten, {done.already:,} already were, {done.leftovers:,} v1 keys "
                   "naming no job deleted")
