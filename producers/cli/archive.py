"""`cancelq archive migrate` and `cancelq archive run`: the archive's schema, and moving
settled jobs into it by hand or as a long-running process (the worker does it too)."""

from __future__ import annotations

import time

import click

from cancelq.archive.archiver import BATCH, Archiver
from cancelq.core.errors import ArchiveUnavailable, ConfigError
from cancelq.core.settings import Settings, load_settings
from cancelq.core.urls import mask_url
from producers.cli.common import epilog, one_line_errors, print_json, store_from_env


def _archive_url(settings: Settings) -> str:
    if not settings.archive_url:
        raise ConfigError("ARCHIVE_URL: not set (e.g. postgresql+psycopg://cancelq@db/cancelq "
                          "or sqlite:///var/lib/cancelq/archive.db)")
    return settings.archive_dsn() or settings.archive_url


@click.group(epilog=epilog(
    "cancelq archive migrate",
    "cancelq archive run --follow",
    notes=["Reads ARCHIVE_URL (docs/archive.md)."],
))
def archive() -> None:
    """The archive (ARCHIVE_URL): its schema, and settled jobs moved into it."""


@archive.command(epilog=epilog(
    "cancelq archive migrate",
    "cancelq archive migrate --json",
    notes=["ARCHIVE_URL: postgresql+psycopg://user:pw@host/db or sqlite:///path",
           "(docs/archive.md)."],
))
@click.option("--json", "as_json", is_flag=True, help='Print {"url", "before", "now"}.')
@one_line_errors
def migrate(as_json: bool) -> None:
    """Create or upgrade the archive's tables to this version's schema (safe to rerun)."""
    from cancelq.archive import migrate as schema  # SQLAlchemy, Alembic: for this verb only
    from cancelq.archive.database import make_engine

    url = _archive_url(load_settings())
    engine = make_engine(url)
    try:
        before, now = schema.upgrade(engine)
    finally:
        engine.dispose()
    if as_json:
        print_json({"url": mask_url(url), "before": before, "now": now})
    elif before == now:
        click.echo(f"archive at {mask_url(url)}: already at schema {now}")
    else:
        click.echo(f"archive at {mask_url(url)}: schema {before or 'none'} -> {now}")


@archive.command(epilog=epilog(
    "cancelq archive run                 # archive what is pending now, then exit",
    "cancelq archive run --follow        # keep archiving until Ctrl-C",
))
@click.option("--follow", is_flag=True, help="Keep archiving as jobs settle, until stopped.")
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              help="Seconds between passes with --follow.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=BATCH, show_default=True,
              help="Jobs per transaction.")
@one_line_errors
def run(follow: bool, interval: float, batch: int) -> None:
    """Move settled and dead jobs from Redis into the archive (each committed first)."""
    from cancelq.archive.archive import Archive

    with store_from_env() as (settings, store):
        archiver = Archiver(store, Archive(_archive_url(settings)), batch=batch)
        try:
            if not follow:
                archiver.drain()
            else:
                _follow(archiver, interval)
        finally:
            archiver.archive.close()
        pending, _ = store.archive_backlog()
    click.echo(f"archived {archiver.archived} jobs; {pending} still pending")


def _follow(archiver: Archiver, interval: float) -> None:
    """Drain, sleep, again; a database outage is one line per minute, then a retry."""
    quiet_until = 0.0
    try:
        while True:
            try:
                archiver.drain()
            except ArchiveUnavailable as exc:
                if time.monotonic() >= quiet_until:
                    click.echo(f"cancelq: {exc} (retrying; Redis keeps every job)", err=True)
                    quiet_until = time.monotonic() + 60
            time.sleep(interval)
    except KeyboardInterrupt:
        return


@archive.command(epilog=epilog("cancelq archive backfill && cancelq archive run"))
@one_line_errors
def backfill() -> None:
    """List jobs that ended before the archive was set up, for the archiver to copy.

    Safe to rerun: a job already waiting keeps its place. Reads Redis's state
    indexes a page at a time; the archive itself is not touched.
    """
    with store_from_env() as (_, store):
        added = store.list_ended_for_archive()
        pending, _ = store.archive_backlog()
    click.echo(f"{added} job(s) newly listed for the archive; {pending} waiting in all")


@archive.command(epilog=epilog(
    "cancelq archive prune --before 2020-11 --dry-run   # what would go",
    "cancelq archive prune --before 2020-11             # drop the older months",
    notes=["PostgreSQL: each month's two partitions are detached and dropped (cheap, no",
           "bloat); SQLite: the month's rows are deleted. Needs the schema owner's role",
           "(docs/operations.md)."],
))
@click.option("--before", "before_text", required=True, metavar="YYYY-MM",
              help="Drop every month before this one (it must be in the past).")
@click.option("--dry-run", is_flag=True, help="List the months that would go; drop nothing.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"dry_run", "before", "months": [{"month", "jobs", "tables"}]}.')
@one_line_errors
def prune(before_text: str, dry_run: bool, as_json: bool) -> None:
    """Drop the archive's months before a given month, whole (docs/archive.md)."""
    from cancelq.archive.archive import Archive
    from cancelq.archive.prune import parse_month

    before = parse_month(before_text)
    archive = Archive(_archive_url(load_settings()))
    try:
        months = archive.prune(before, dry_run=dry_run)
    finally:
        archive.close()
    if as_json:
        print_json({"dry_run": dry_run, "before": before_text.strip(),
                    "months": [m.to_json() for m in months]})
        return
    verb = "would drop" if dry_run else "dropped"
    for month in months:
        click.echo(f"{month.name}: {verb} {month.jobs:,} job(s) ({', '.join(month.tables)})")
    total = sum(m.jobs for m in months)
    click.echo(f"{verb} {len(months)} month(s) before {before_text.strip()}, {total:,} job(s)")
