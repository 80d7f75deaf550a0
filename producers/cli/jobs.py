"""`cancelq enqueue`, `status` and `audit`: one job in, one job or many out."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext

import click

from cancelq.bulk.runs import RunJob, write_csv
from cancelq.core.contract import canonical_uuid
from cancelq.core.errors import ArchiveUnavailable
from cancelq.core.lifecycle import Outcome, State
from cancelq.core.operator import operator_name
from cancelq.ops.lookup import JobNotFound
from cancelq.ops.readthrough import Located, ReadThrough
from cancelq.store.audit import AuditStore
from cancelq.store.records import JobRecord, Query
from producers.cli.common import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    WANTED_OUTCOMES,
    epilog,
    fail,
    one_line_errors,
    print_json,
    reader_from_env,
)
from producers.cli.render import TIMES_NOTE, job_detail, jobs_table, limit_caption, make_console
from producers.cli.times import RELATIVE_HELP, TIME
from producers.enqueue import enqueue_cancellation

WAIT_POLL_SECONDS = 0.2


def default_requester() -> str:
    return f"{operator_name()} (cancelq)"


@click.command(epilog=epilog(
    "cancelq enqueue CASE_UUID EVENT_UUID --reason 'patient moved'",
    "cancelq enqueue CASE_ID EVENT_ID --run-id clinic-42 --json",
))
@click.argument("case_id")
@click.argument("event_id")
@click.option("--force", is_flag=True,
              help="Cancel again: a new job for a pair whose job has settled (cancelled).")
@click.option("--reason", help="Why (kept in the audit).")
@click.option("--run-id", help="Group this job under a run.")
@click.option("--requested-by", help="Who asks (default: user@host).")
@click.option("--json", "as_json", is_flag=True, help='Print {"job_id": ..., "duplicate": ...}.')
@one_line_errors
def enqueue(
    case_id: str,
    event_id: str,
    force: bool,
    reason: str | None,
    run_id: str | None,
    requested_by: str | None,
    as_json: bool,
) -> None:
    """Ask for EVENT_ID of CASE_ID to be cancelled; prints the job id."""
    from producers.enqueue import default_store

    # Validate before touching Redis: a bad id must not even need a reachable store.
    canonical_uuid(case_id, "case_id")
    canonical_uuid(event_id, "event_id")
    result = enqueue_cancellation(
        case_id,
        event_id,
        run_id=run_id,
        requested_by=requested_by or default_requester(),
        reason=reason,
        force=force,
        store=default_store(),
    )
    if result.refused == "force":
        if as_json:
            print_json({"job_id": result.job_id, "duplicate": True, "refused": "force"})
        click.echo(f"refused: job {result.job_id} for this pair is {result.state.value}; --force "
                   "only replaces a settled job (wait for it, or replay it if dead)", err=True)
        raise click.exceptions.Exit(1)
    if as_json:
        print_json({"job_id": result.job_id, "duplicate": result.duplicate})
    elif result.duplicate:
        click.echo(result.job_id)
        click.echo(f"duplicate: job is {result.state.value} (use --force for a new one)", err=True)
    else:
        click.echo(result.job_id)


@click.command(epilog=epilog(
    "cancelq status 3f2a9c1e            # any unique prefix of the job id",
    "cancelq status 3f2a9c1e --wait 60  # 0 cancelled, 1 other end, 3 still open",
    "cancelq status 3f2a9c1e-... --json",
))
@click.argument("job_id")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Block until settled or dead: exit 0 if cancelled (or already), 1 if it "
              "ended otherwise, 3 if SECONDS ran out.")
@click.option("--json", "as_json", is_flag=True, help="Print the job object.")
@one_line_errors
def status(job_id: str, wait_seconds: float | None, as_json: bool) -> None:
    """Show a job with its attempts. JOB_ID may be any unique prefix (at least 4 digits)."""
    with reader_from_env() as (_, reader):
        job_id = reader.resolve(job_id, "JOB_ID")
        found = reader.get(job_id)
        if found is None:
            raise JobNotFound("JOB_ID", job_id)
        record = found.record
        if wait_seconds is not None and found.source == "redis":
            record = _wait_final(reader.store, record, wait_seconds)
            found = Located(record, "redis")
    if as_json:
        print_json(found.to_json())
    else:
        job_detail(make_console(), record)
        if found.source == "archive":
            click.echo("(from the archive: retention has deleted this job from Redis)")
    if wait_seconds is not None:
        _exit_after_wait(record, wait_seconds)


def _wait_final(store: AuditStore, record: JobRecord, seconds: float) -> JobRecord:
    """Poll until the job is settled or dead, or `seconds` pass; a spinner on a terminal."""
    err = make_console(stderr=True)
    deadline = time.monotonic() + seconds
    spinner = (err.status(f"job {record.job_id[:8]}: {record.state.value}")
               if err.is_terminal else nullcontext())
    with spinner as live:
        while not record.state.is_final and time.monotonic() < deadline:
            time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            record = store.get(record.job_id) or record
            if live is not None:
                live.update(f"job {record.job_id[:8]}: {record.state.value}, "
                            f"{record.attempt_count} attempt(s)")
    return record


def _exit_after_wait(record: JobRecord, seconds: float) -> None:
    if not record.state.is_final:
        fail(f"--wait: job {record.job_id} still {record.state.value} after {seconds:g} s",
             EXIT_TIMEOUT)
    if record.outcome not in WANTED_OUTCOMES:
        fail(f"job {record.job_id} ended {record.state.value} ({record.outcome})", EXIT_FAILED)


@click.command(epilog=epilog(
    "cancelq audit                          # the newest 50 jobs",
    "cancelq audit --since 2h --state dead  # created in the last two hours",
    "cancelq audit --since 2026-12-01T09:00 --until 2026-12-01T10:00   # UTC",
    "cancelq audit --run clinic-42 --limit 1000 --csv > clinic-42.csv",
    "cancelq audit --outcome cancelled --full-ids --json",
))
@click.option("--case", "case_id", help="Only jobs of this case.")
@click.option("--event", "event_id", help="Only jobs of this event.")
@click.option("--run", "run_id", help="Only jobs of this run.")
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]), metavar="OUTCOME",
              help="Only jobs that ended so: " + ", ".join(o.value for o in Outcome) + ".")
@click.option("--state", type=click.Choice([s.value for s in State]), metavar="STATE",
              help="Only jobs now in this state: " + ", ".join(s.value for s in State) + ".")
@click.option("--since", type=TIME, help=f"Only jobs created at or after this: {RELATIVE_HELP}.")
@click.option("--until", type=TIME, help="Only jobs created at or before this (same forms).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--full-ids", is_flag=True, help="Whole ids (default: shortest unique prefixes).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of job objects.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print CSV (the run export's columns; formula-safe for spreadsheets).")
@one_line_errors
def audit(
    case_id: str | None,
    event_id: str | None,
    run_id: str | None,
    outcome: str | None,
    state: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    full_ids: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List jobs, newest first, from the audit store's indexes (no keyspace scan).

    Times are UTC, in the table and in --since/--until.
    """
    if as_json and as_csv:
        fail("--json and --csv: choose one")
    query = Query(
        case_id=canonical_uuid(case_id, "--case") if case_id else None,
        event_id=canonical_uuid(event_id, "--event") if event_id else None,
        run_id=run_id,
        outcome=outcome,
        state=state,
        since=since,
        until=until,
        limit=limit + 1,  # one more tells whether --limit cut the list
    )
    with reader_from_env() as (_, reader):
        found = _read_through(reader, query, as_json or as_csv)
    records, more = [f.record for f in found[:limit]], len(found) > limit
    if as_json:
        print_json([f.to_json() for f in found[:limit]])
    elif as_csv:
        write_csv((RunJob.of(record) for record in records), sys.stdout)
    else:
        out = make_console()
        out.print(jobs_table(
            records, width=out.width, full_ids=full_ids,
            title=f"{len(records)} job(s), newest first ({TIMES_NOTE})"
            + _archived_note(found[:limit]),
            caption=limit_caption(len(records), more, limit),
        ))


def _read_through(reader: ReadThrough, query: Query, with_attempts: bool) -> list[Located]:
    """Redis and the archive; an archive that is down is one line on stderr, and the
    listing is Redis's alone (never a failure: the hot jobs are still worth seeing)."""
    try:
        return reader.query(query, with_attempts=with_attempts)
    except ArchiveUnavailable as exc:
        click.echo(f"cancelq: warning: archive unavailable, Redis only: {exc}", err=True)
        hot = reader.store.query(query, with_attempts=with_attempts)
        return [Located(record, "redis") for record in hot]


def _archived_note(found: list[Located]) -> str:
    archived = sum(1 for f in found if f.source == "archive")
    return f", {archived} from the archive" if archived else ""
