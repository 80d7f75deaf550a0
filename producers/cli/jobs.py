"""`cancelq enqueue`, `status` and `audit`: one job in, one job or many out."""

from __future__ import annotations

import time

import click

from cancelq.core.contract import canonical_uuid
from cancelq.core.lifecycle import Outcome, State
from cancelq.core.operator import operator_name
from cancelq.store.records import Query
from producers.cli.common import (
    EXIT_TIMEOUT,
    fail,
    one_line_errors,
    parse_since,
    print_json,
    store_from_env,
)
from producers.cli.render import console, job_detail, jobs_table
from producers.enqueue import enqueue_cancellation

WAIT_POLL_SECONDS = 0.2


def default_requester() -> str:
    return f"{operator_name()} (cancelq)"


@click.command()
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


@click.command()
@click.argument("job_id")
@click.option("--wait", "wait_seconds", type=float, help="Block until settled or dead.")
@click.option("--json", "as_json", is_flag=True, help="Print the job object.")
@one_line_errors
def status(job_id: str, wait_seconds: float | None, as_json: bool) -> None:
    """Show a job with its attempts."""
    with store_from_env() as (_, store):
        record = store.get(job_id)
        if record is None:
            fail(f"job_id: no job {job_id!r}", 1)
        if wait_seconds is not None:
            deadline = time.monotonic() + wait_seconds
            while not record.state.is_final and time.monotonic() < deadline:
                time.sleep(WAIT_POLL_SECONDS)
                record = store.get(job_id) or record
        if as_json:
            print_json(record.to_json())
        else:
            job_detail(record)
        if wait_seconds is not None and not record.state.is_final:
            raise SystemExit(EXIT_TIMEOUT)


@click.command()
@click.option("--case", "case_id", help="Only jobs of this case.")
@click.option("--event", "event_id", help="Only jobs of this event.")
@click.option("--run", "run_id", help="Only jobs of this run.")
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]))
@click.option("--state", type=click.Choice([s.value for s in State]))
@click.option("--since", help="Only jobs created at or after this ISO time.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of job objects.")
@one_line_errors
def audit(
    case_id: str | None,
    event_id: str | None,
    run_id: str | None,
    outcome: str | None,
    state: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first, from the audit store's indexes (no keyspace scan)."""
    query = Query(
        case_id=canonical_uuid(case_id, "--case") if case_id else None,
        event_id=canonical_uuid(event_id, "--event") if event_id else None,
        run_id=run_id,
        outcome=outcome,
        state=state,
        since=parse_since(since),
        limit=limit,
    )
    with store_from_env() as (_, store):
        records = store.query(query, with_attempts=as_json)
    if as_json:
        print_json([record.to_json() for record in records])
    else:
        console.print(jobs_table(records, title=f"{len(records)} job(s)"))
