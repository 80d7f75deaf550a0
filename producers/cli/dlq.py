"""`cancelq dlq list` and `cancelq dlq replay`: dead jobs, why they died, and a second chance.

Exit codes of `replay`: 0 every named job was replayed (or would be, with --dry-run), 1 at
least one was refused (not dead) or missing: each such id gets its own line on stderr.
"""

from __future__ import annotations

import click
from rich.table import Table

from cancelq.core.lifecycle import DEAD_OUTCOMES
from cancelq.core.operator import operator_name
from cancelq.ops.deadletters import DeadLetter, dead_job_ids, list_dead, replay
from producers.cli.common import EXIT_FAILED, fail, one_line_errors, print_json, store_from_env
from producers.cli.render import console

DEAD_CHOICES = sorted(o.value for o in DEAD_OUTCOMES)


@click.group()
def dlq() -> None:
    """Dead-lettered jobs (unauthorized, retries_exhausted): list and replay."""


@dlq.command(name="list")
@click.option("--outcome", type=click.Choice(DEAD_CHOICES), help="Only jobs that died so.")
@click.option("--run", "run_id", help="Only jobs of this run.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of dead jobs.")
@one_line_errors
def list_command(outcome: str | None, run_id: str | None, limit: int, as_json: bool) -> None:
    """List dead jobs, newest first, with why they died and when."""
    with store_from_env() as (_, store):
        letters = list_dead(store, outcome=outcome, run_id=run_id, limit=limit)
    if as_json:
        print_json([letter.to_json() for letter in letters])
        return
    console.print(_table(letters))


@dlq.command(name="replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Every dead job (with the filters).")
@click.option("--outcome", type=click.Choice(DEAD_CHOICES), help="With --all: only these.")
@click.option("--run", "run_id", help="With --all: only jobs of this run.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--by", "who", help="Who replays, for the audit (default: user@host).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per job.")
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
    the API key is fixed.
    """
    if replay_all == bool(job_ids):
        fail("name JOB_ID... or pass --all (not both)")
    if (outcome or run_id) and not replay_all:
        fail("--outcome and --run filter --all; with JOB_IDs, name exactly the jobs")
    with store_from_env() as (_, store):
        ids = dead_job_ids(store, outcome=outcome, run_id=run_id) if replay_all else job_ids
        report = replay(store, ids, who=who or operator_name(), dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "auth_block_cleared": report.auth_block_cleared,
                    "results": [r.to_json() for r in report.results]})
    else:
        for result in report.results:
            line = f"{result.job_id}  {result.detail}"
            click.echo(line if result.ok else f"cancelq: {line}", err=not result.ok)
        done = sum(1 for r in report.results if r.ok)
        verb = "would replay" if dry_run else "replayed"
        summary = f"{verb} {done} of {len(report.results)} job(s)"
        if report.auth_block_cleared:
            summary += "; auth block cleared"
        click.echo(summary, err=True)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


def _table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead job(s)", header_style="bold")
    for column in ("job", "outcome", "died", "calls", "replays", "why"):
        table.add_column(column, no_wrap=column != "why")
    for letter in letters:
        data = letter.to_json()
        table.add_row(
            letter.record.job_id,
            letter.record.outcome or "-",
            (data["died_at"] or "-").replace("T", " ").removesuffix("Z")[:19],
            str(data["calls"]),
            str(data["replays"]),
            letter.why,
        )
    return table
