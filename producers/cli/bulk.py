"""`cancelq bulk`, `run` and `runs`: a file of cancellations in, a run's progress out."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import redis
from rich.columns import Columns
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from cancelq.bulk.intake import (
    FORMATS,
    BadRow,
    BulkSummary,
    ByteCount,
    Format,
    Limits,
    format_for,
    intake,
    new_run_id,
    read_rows,
)
from cancelq.bulk.runs import (
    RunJob,
    RunProgress,
    list_runs,
    run_progress,
    wait_for_run,
    write_csv,
)
from cancelq.core.errors import CancelqError
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from producers.cli.common import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    WANTED_OUTCOMES,
    epilog,
    fail,
    one_line_errors,
    print_json,
    reader_from_env,
    store_from_env,
)
from producers.cli.follow import follow as follow_run
from producers.cli.jobs import default_requester
from producers.cli.render import (
    TIMES_NOTE,
    Column,
    counts_table,
    fit_table,
    limit_caption,
    make_console,
    print_whole,
    shorten_middle,
)
from producers.cli.times import cell_time

_err = Console(stderr=True, highlight=False, soft_wrap=True)


@click.command(epilog=epilog(
    "cancelq bulk cleanup.csv --dry-run        # validate and count only",
    "cancelq bulk cleanup.csv --run-id clinic-42",
    "zcat events.jsonl.gz | cancelq bulk - --format jsonl --json",
))
@click.argument("source", metavar="FILE|-")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Default: from the file name (.csv, .jsonl, .ndjson), else sniffed.")
@click.option("--run-id", help="Group the jobs under this run (default: a new bulk-... id).")
@click.option("--requested-by", help="Who asks (default: user@host).")
@click.option("--dry-run", is_flag=True, help="Validate and count only; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@one_line_errors
def bulk(
    source: str,
    fmt: Format | None,
    run_id: str | None,
    requested_by: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Enqueue every row of FILE (CSV with a header, or JSON lines) on the bulk queue.

    Rows need case_id and event_id (reason is optional, other columns are ignored). Bad rows
    are reported on stderr with their line number, and the good rows still go. Duplicates
    (a pair that already has a live job, from the store or earlier in the file) and blank
    lines (empty, or only empty fields) are counted, not sent.
    """
    run_id = run_id or new_run_id()
    requested_by = requested_by or default_requester()
    settings = load_settings()
    summary = BulkSummary(run_id=run_id, dry_run=dry_run)
    with _open(source) as (stream, size):
        chosen: Format = fmt or format_for(None if source == "-" else source, _peek(stream))
        counter = ByteCount()
        limits = Limits.from_settings(settings)
        rows = read_rows(stream, chosen, counter, limits)
        with _progress(size, enabled=_err.is_terminal) as progress, \
                _summary_on_failure(summary, as_json):
            with _store_unless(dry_run) as store:
                intake(rows, run_id=run_id, store=store, requested_by=requested_by,
                       dry_run=dry_run, batch_size=limits.batch_size,
                       on_bad_row=_report_bad_row(progress),
                       on_chunk=progress.update, counter=counter, summary=summary)
    _print_bulk_summary(summary, as_json)


@contextmanager
def _store_unless(dry_run: bool) -> Iterator[AuditStore | None]:
    if dry_run:
        yield None
        return
    with store_from_env() as (_, store):
        yield store


def _peek(stream: IO[bytes]) -> bytes:
    """The start of the stream, not consumed (to sniff the format), without reading a line
    whole: a binary file may have no newline at all."""
    peek = getattr(stream, "peek", None)
    return peek(256)[:256] if peek is not None else b""


@contextmanager
def _summary_on_failure(summary: BulkSummary, as_json: bool) -> Iterator[None]:
    """If the run stops half-way (Redis gone), the counts so far still print, then the error."""
    try:
        yield
    except (CancelqError, redis.RedisError):
        if summary.rows:
            _print_bulk_summary(summary, as_json)
        raise


def _print_bulk_summary(summary: BulkSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_json())
    else:
        _print_summary(summary)


@contextmanager
def _open(source: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if source == "-":
        yield sys.stdin.buffer, None
        return
    path = Path(source)
    try:
        handle = path.open("rb")
    except OSError as exc:
        fail(f"FILE: cannot read {source}: {exc.strerror}")
    with handle:
        yield handle, path.stat().st_size


class _Bar:
    """A rich progress bar on a terminal (by bytes of a file, or rows of stdin); else nothing."""

    def __init__(self, progress: Progress | None, size: int | None) -> None:
        self.progress = progress
        self.size = size
        self.task = None if progress is None else progress.add_task(
            "rows 0", total=size
        )

    def update(self, summary: BulkSummary) -> None:
        if self.progress is None or self.task is None:
            return
        completed = summary.bytes_read if self.size is not None else summary.rows
        self.progress.update(
            self.task, completed=completed,
            description=f"rows {summary.rows:,}  invalid {summary.invalid:,}",
        )

    def print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)


@contextmanager
def _progress(size: int | None, *, enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None, size)
        return
    columns = [TextColumn("{task.description}"), BarColumn()]
    if size is not None:
        columns += [DownloadColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=_err, transient=True) as progress:
        yield _Bar(progress, size)


def _report_bad_row(bar: _Bar) -> Callable[[BadRow], None]:
    def report(bad: BadRow) -> None:
        bar.print(f"cancelq: line {bad.line}: {bad.error}")

    return report


def _print_summary(summary: BulkSummary) -> None:
    title = f"run {summary.run_id}" + (" (dry run: nothing sent)" if summary.dry_run else "")
    counts = {
        "rows read": summary.rows,
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "invalid": summary.invalid,
        "blank": summary.blank,
    }
    out = make_console()
    print_whole(out, title)  # the run id whole, on its own line: it is copied from here
    table = Table(header_style="bold")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, value in counts.items():
        table.add_row(name, "not checked" if value is None else f"{value:,}")
    out.print(table)
    out.print(f"{summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s")
    if not summary.dry_run:
        out.print("follow it with:")
        print_whole(out, f"  cancelq run {summary.run_id} --follow")


@click.command(epilog=epilog(
    "cancelq run bulk-20261201-0930            # progress and outcome counts now",
    "cancelq run bulk-20261201-0930 --follow   # live: done, rate, ETA, outcomes",
    "cancelq run bulk-20261201-0930 --follow --wait 3600 --json",
    "cancelq run bulk-20261201-0930 --csv outcomes.csv",
    notes=["With --follow or --wait: exit 0 when every job ended cancelled or",
           "already_cancelled, 1 when some ended otherwise (see cancelq dlq list",
           "--run RUN), 3 when time ran out or Ctrl-C stopped following (the run",
           "goes on)."],
))
@click.argument("run_id")
@click.option("--follow", is_flag=True,
              help="Show live progress until every job is settled or dead (or --wait ends).")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Block until every job is settled or dead, at most SECONDS (then exit 3).")
@click.option("--csv", "csv_path", metavar="FILE",
              help="Write every job's outcome to FILE as CSV ('-' for stdout); cells a "
              "spreadsheet would run as formulas get a leading apostrophe.")
@click.option("--json", "as_json", is_flag=True, help="Print progress as one JSON object.")
@one_line_errors
def run(
    run_id: str, follow: bool, wait_seconds: float | None, csv_path: str | None, as_json: bool
) -> None:
    """Show a run's progress and outcome counts (from its counters, not a scan)."""
    waited = follow or wait_seconds is not None
    with reader_from_env() as (_, reader):
        store, located = reader.store, reader.run(run_id)
        progress, hot = located.progress, located.source == "redis"
        if not progress.exists:
            fail(f"RUN_ID: no run {run_id!r} (cancelq runs lists them)", EXIT_FAILED)
        started = time.monotonic()
        if waited and hot:  # an archived run has ended: nothing to wait for
            progress = _wait(store, run_id, follow, wait_seconds)
        if csv_path is not None:
            jobs = reader.run_jobs(progress) if hot else reader.archived_run_jobs(run_id)
            count = _export(jobs, csv_path)
            click.echo(f"{count} job(s) written to {csv_path}", err=True)
    if csv_path == "-":
        pass  # stdout carries the CSV
    elif as_json:
        print_json({**progress.to_json(), "source": located.source})
    else:
        _print_progress(progress, time.monotonic() - started if follow else None)
        if not hot:
            click.echo("(from the archive: retention has deleted this run from Redis)")
        elif progress.trimmed:
            click.echo(f"({progress.trimmed:,} of its jobs ended and were deleted from Redis "
                       "by retention: counted by outcome; --csv reads them from the archive)")
    if waited:
        _exit_by_outcome(progress, wait_seconds)


def _wait(store: AuditStore, run_id: str, follow: bool, seconds: float | None) -> RunProgress:
    try:
        if follow:
            return follow_run(store, run_id, timeout=seconds)
        return wait_for_run(store, run_id, seconds or 0.0)
    except KeyboardInterrupt:
        return run_progress(store, run_id)  # stopped following: the summary, then exit 3


def _exit_by_outcome(progress: RunProgress, seconds: float | None) -> None:
    if not progress.finished:
        limit = "" if seconds is None else f" after {seconds:g} s"
        fail(f"run {progress.run_id} not finished{limit}: {progress.pending:,} of "
             f"{progress.jobs:,} job(s) still open", EXIT_TIMEOUT)
    other = {name: count for name, count in progress.outcomes.items()
             if name not in WANTED_OUTCOMES}
    if other:
        mix = ", ".join(f"{name} {count:,}" for name, count in other.items())
        fail(f"run {progress.run_id}: {sum(other.values()):,} of {progress.jobs:,} job(s) "
             f"ended otherwise than cancelled ({mix})", EXIT_FAILED)


def _export(jobs: Iterable[RunJob], csv_path: str) -> int:
    if csv_path == "-":
        return write_csv(jobs, sys.stdout)
    try:
        with open(csv_path, "w", newline="", encoding="utf-8") as out:
            return write_csv(jobs, out)
    except OSError as exc:
        fail(f"--csv: cannot write {csv_path}: {exc.strerror}")


def _print_progress(progress: RunProgress, followed_seconds: float | None = None) -> None:
    """The run id on a line of its own (to be copied whole), then the state, the start
    time, the intake, and the tables: no line longer than 80 columns breaks a value."""
    out = make_console()
    data = progress.to_json()
    state = "finished" if progress.finished else "in progress"
    print_whole(out, f"run {progress.run_id}")
    out.print(Text(f"  {state}: {progress.done:,}/{progress.jobs:,} done "
                   f"({data['percent']}%)"))
    out.print(Text(f"  started {cell_time(progress.started_at)} UTC"))
    if progress.intake is not None:
        for line in intake_lines(progress.intake, out.width):
            out.print(Text(line))
    if followed_seconds is not None and followed_seconds > 0:
        out.print(f"followed for {followed_seconds:,.1f} s")
    tables = [counts_table("states", data["states"])]
    if progress.outcomes:
        tables.append(counts_table("outcomes", progress.outcomes))
    out.print(Columns(tables, padding=(0, 2)))  # side by side where they fit


def intake_lines(intake: dict[str, Any], width: int) -> list[str]:
    """What `cancelq bulk` read for the run, kept with it: counts, then the first bad lines
    (their numbers only; `--json` has each error)."""
    counts = (f"  intake: {intake['rows']:,} rows read, {intake['accepted']:,} accepted, "
              f"{intake['duplicates']:,} duplicates, {intake['invalid']:,} invalid, "
              f"{intake['blank']:,} blank")
    lines = [counts] if len(counts) <= width else [
        f"  intake: {intake['rows']:,} rows read, {intake['accepted']:,} accepted,",
        f"          {intake['duplicates']:,} duplicates, {intake['invalid']:,} invalid, "
        f"{intake['blank']:,} blank"]
    numbers = [str(bad.get("line")) for bad in intake.get("bad_lines", [])]
    if numbers:
        more = ", ..." if intake["invalid"] > len(numbers) else ""
        lines.append(shorten_middle(f"  first bad lines: {', '.join(numbers)}{more}", width))
    return lines


RUN_COLUMNS = (
    Column("run"),
    Column("done", justify="right"),
    Column("jobs", justify="right"),
    Column("dead", justify="right"),
    Column("started", priority=1),
    Column("pending", priority=2, justify="right"),
    Column("settled", priority=2, justify="right"),
)


@click.command(epilog=epilog("cancelq runs", "cancelq runs --limit 5 --json"))
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of run objects.")
@one_line_errors
def runs(limit: int, as_json: bool) -> None:
    """List runs, newest first, with their progress."""
    with store_from_env() as (_, store):
        found = list_runs(store, limit + 1)
    shown, more = found[:limit], len(found) > limit
    if as_json:
        print_json([progress.to_json() for progress in shown])
        return
    rows = [
        (
            p.run_id, f"{p.to_json()['percent']}%", f"{p.jobs:,}", f"{p.state('dead'):,}",
            cell_time(p.started_at), f"{p.pending:,}", f"{p.state('settled'):,}",
        )
        for p in shown
    ]
    out = make_console()
    out.print(fit_table(RUN_COLUMNS, rows, width=out.width,
                        title=f"{len(shown)} run(s), newest first ({TIMES_NOTE})",
                        caption=limit_caption(len(shown), more, limit)))
