"""`cancelq dlq list` and `cancelq dlq replay`: dead jobs, why they died, and a second chance.

Exit codes of `replay`: 0 every named job was replayed (or would be, with --dry-run), 1 at
least one was refused (not dead) or missing: each such id gets its own line on stderr.
"""

from __future__ import annotations

import click
from rich.table import Table

from cancelq.core.errors import ArchiveUnavailable
from cancelq.core.lifecycle import DEAD_OUTCOMES
from cancelq.core.operator import operator_name
from cancelq.ops.deadletters import (
    DeadLetter,
    ReplayReport,
    dead_job_ids,
    list_dead,
    replay,
)
from cancelq.ops.lookup import resolve_job_ids
from cancelq.store.records import Query
from producers.cli.common import (
    EXIT_FAILED,
    epilog,
    fail,
    one_line_errors,
    print_json,
    reader_from_env,
)
from producers.cli.render import (
    TIMES_NOTE,
    Column,
    fit_table,
    id_formatter,
    limit_caption,
    make_console,
)
from producers.cli.times import RELATIVE_HELP, TIME, cell_time

DEAD_CHOICES = sorted(o.value for o in DEAD_OUTCOMES)


@click.group(epilog=epilog(
    "cancelq dlq list --outcome unauthorized",
    "cancelq dlq replay 3f2a9c1e 7be01d44",
    "cancelq dlq replay --all --outcome unauthorized --dry-run",
))
def dlq() -> None:
    """Dead-lettered jobs (unauthorized, retries_exhausted): list and replay."""


@dlq.command(name="list", epilog=epilog(
    "cancelq dlq list",
    "cancelq dlq list --outcome retries_exhausted --run clinic-42 --limit 500",
    "cancelq dlq list --since 1d",
    "cancelq dlq list --full-ids --json",
))
@click.option("--outcome", type=click.Choice(DEAD_CHOICES), help="Only jobs that died so.")
@click.option("--run", "run_id", help="Only jobs of this run.")
@click.option("--since", type=TIME, help=f"Only jobs created at or after this: {RELATIVE_HELP}.")
@click.option("--until", type=TIME, help="Only jobs created at or before this (same forms).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--full-ids", is_flag=True, help="Whole ids (default: shortest unique prefixes).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of dead jobs.")
@one_line_errors
def list_command(
    outcome: str | None,
    run_id: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    full_ids: bool,
    as_json: bool,
) -> None:
    """List dead jobs, newest first, with why they died and when (UTC).

    With ARCHIVE_URL, dead jobs retention deleted from Redis are listed from the archive
    too ("source": "archive" in --json); an archive that is down is one warning line.
    """
    query = Query(outcome=outcome, run_id=run_id, limit=limit + 1, since=since, until=until)
    with reader_from_env() as (_, reader):
        try:
            found = reader.dead(query)
        except ArchiveUnavailable as exc:
            click.echo(f"cancelq: warning: archive unavailable, Redis only: {exc}", err=True)
            found = list_dead(reader.store, outcome=outcome, run_id=run_id, limit=limit + 1,
                              since=since, until=until)
    letters, more = found[:limit], len(found) > limit
    if as_json:
        print_json([letter.to_json() for letter in letters])
        return
    out = make_console()
    out.print(dead_table(letters, width=out.width, full_ids=full_ids,
                         caption=limit_caption(len(letters), more, limit)))


@dlq.command(name="replay", epilog=epilog(
    "cancelq dlq replay 3f2a9c1e                  # any unique prefix of a job id",
    "cancelq dlq replay --all --outcome unauthorized  # once the key is fixed",
    "cancelq dlq replay --all --run clinic-42 --dry-run --json",
    notes=['--json prints one object: {"dry_run": bool, "auth_block_cleared": bool,',
           '"results": [{"job_id", "status", "state", "outcome", "detail"}, ...]}',
           "with status one of replayed, would_replay, refused, missing."],
))
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Every dead job (with the filters).")
@click.option("--outcome", type=click.Choice(DEAD_CHOICES), help="With --all: only these.")
@click.option("--run", "run_id", help="With --all: only jobs of this run.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--by", "who", help="Who replays, for the audit (default: user@host).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: dry_run, auth_block_cleared, and results (one "
              "object per job).")
@one_line_errors
def replay_command(
    job_ids: tuple[str, ...],
    replay_all: bool,
    outcome: str | None,
    run_id: str | None,
    dry_run: bool,
    who: str | None,
    as_json: bool,
) -> None:
    """Put dead jobs back on their queue as new attempts of the same jobs.

    The audit keeps the earlier attempts and records the replay (who, when). A job that is
    not dead is refused. Replaying an `unauthorized` job lifts the auth block: do it once
    the API key is fixed. JOB_IDs may be unique prefixes.
    """
    if replay_all == bool(job_ids):
        fail("name JOB_ID... or pass --all (not both)")
    if (outcome or run_id) and not replay_all:
        fail("--outcome and --run filter --all; with JOB_IDs, name exactly the jobs")
    with reader_from_env() as (_, reader):
        store = reader.store
        ids = (dead_job_ids(store, outcome=outcome, run_id=run_id) if replay_all
               else resolve_job_ids(store, job_ids, keep_missing=True))
        report = reader.explain_missing(
            replay(store, ids, who=who or operator_name(), dry_run=dry_run))
        cold = reader.archive_only_dead(outcome=outcome, run_id=run_id) if replay_all else 0
    if as_json:
        print_json({"dry_run": dry_run, "auth_block_cleared": report.auth_block_cleared,
                    "results": [r.to_json() for r in report.results]})
    else:
        _print_report(report, dry_run)
    if cold:
        click.echo(f"cancelq: note: {cold:,}{'+' if cold >= 10_000 else ''} dead job(s) only "
                   "in the archive were not replayed (retention deleted them from Redis; "
                   "cancelq dlq list --json shows them, \"source\": \"archive\"): cancelq "
                   "enqueue CASE EVENT makes a new job for one", err=True)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


def _print_report(report: ReplayReport, dry_run: bool) -> None:
    """One line per job (refusals on stderr), then the summary."""
    for result in report.results:
        line = f"{result.job_id}  {result.detail}"
        click.echo(line if result.ok else f"cancelq: {line}", err=not result.ok)
    done = sum(1 for r in report.results if r.ok)
    verb = "would replay" if dry_run else "replayed"
    summary = f"{verb} {done} of {len(report.results)} job(s)"
    if report.auth_block_cleared:
        summary += "; auth block cleared"
    click.echo(summary, err=True)


DEAD_COLUMNS = (
    Column("job"),
    Column("outcome"),
    Column("died", priority=1),
    Column("why", priority=1, wrap=True, min_width=30),
    Column("calls", priority=2, justify="right"),
    Column("replays", priority=3, justify="right"),
    Column("run", priority=4),
    Column("case", priority=5),
)


def dead_table(
    letters: list[DeadLetter], *, width: int, full_ids: bool = False, caption: str | None = None
) -> Table:
    ids = id_formatter([letter.record.job_id for letter in letters], full=full_ids)
    cases = id_formatter([letter.record.case_id for letter in letters], full=full_ids)
    rows = [
        (
            ids[letter.record.job_id] + (" (archive)" if letter.source == "archive" else ""),
            letter.record.outcome or "-",
            cell_time(letter.record.settled_at),
            letter.why,
            str(sum(1 for a in letter.record.attempts if a.number > 0)),
            str(letter.replays),
            letter.record.run_id or "-",
            cases[letter.record.case_id],
        )
        for letter in letters
    ]
    archived = sum(1 for letter in letters if letter.source == "archive")
    note = f", {archived} from the archive" if archived else ""
    return fit_table(DEAD_COLUMNS, rows, width=width, caption=caption,
                     title=f"{len(letters)} dead job(s), newest first ({TIMES_NOTE}){note}")
