"""`cancelq stats`: the live view, from counters the store keeps (no keyspace scan)."""

from __future__ import annotations

import click
from rich.table import Table

from cancelq.ops.stats import Snapshot, snapshot
from producers.cli.common import one_line_errors, print_json, store_from_env
from producers.cli.render import console


@click.command()
@click.option("--run", "run_id", help="Counts for this run only (queues stay global).")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as one JSON object.")
@one_line_errors
def stats(run_id: str | None, as_json: bool) -> None:
    """Jobs per state and outcome, queue depths, oldest waiting job, calls in the last minute."""
    with store_from_env() as (_, store):
        snap = snapshot(store, run_id=run_id)
    if as_json:
        print_json(snap.to_json())
    else:
        _render(snap)


def _render(snap: Snapshot) -> None:
    data = snap.to_json()
    scope = f"run {snap.run_id}" if snap.run_id else "all runs"
    console.print(f"[bold]cancelq stats[/bold] ({scope}) at {data['taken_at']}")
    console.print(
        f"jobs {snap.jobs}   attempts {snap.attempts}   replays {snap.replays}   "
        f"dead letters {snap.dead_letters}"
    )
    jobs = Table(title="jobs", header_style="bold")
    jobs.add_column("state")
    jobs.add_column("count", justify="right")
    for name, count in snap.states.items():
        jobs.add_row(name, str(count))
    for name, count in snap.outcomes.items():
        jobs.add_row(f"  outcome {name}", str(count))
    console.print(jobs)

    queues = Table(title="queues", header_style="bold")
    for column in ("queue", "ready", "by priority"):
        queues.add_column(column, justify="right" if column == "ready" else "left")
    for depth in snap.queues:
        steps = " ".join(f"{p}:{n}" for p, n in depth.by_priority.items())
        queues.add_row(depth.name, str(depth.ready), steps)
    queues.add_row("delayed (retries, deferrals)", str(snap.delayed), "")
    queues.add_row("unacked (held by workers)", str(snap.unacked), "")
    if snap.delayed_bad:
        queues.add_row("delayed entries set aside (bad)", str(snap.delayed_bad), "")
    console.print(queues)

    if snap.oldest_queued_job is None:
        console.print("oldest waiting job: none")
    else:
        console.print(
            f"oldest waiting job: {snap.oldest_queued_job}, "
            f"{snap.oldest_queued_age_seconds:.1f}s since created"
        )
    mix = ", ".join(f"{status}: {n}" for status, n in snap.calls_last_minute.items()) or "-"
    console.print(f"calls in the last minute: {snap.calls_total} ({mix})")
    breaker = snap.breaker
    if breaker.state != "closed":
        console.print(f"[bold red]circuit breaker {breaker.state}[/bold red] since "
                      f"{data['breaker']['opened_at']}: Care360 failing, jobs wait for a probe")
    else:
        console.print(f"circuit breaker closed ({breaker.failures} consecutive failures)")
    if snap.auth_blocked_seconds is not None:
        left = ("until cleared" if snap.auth_blocked_seconds < 0
                else f"{snap.auth_blocked_seconds:.0f}s left")
        console.print(f"[bold red]auth blocked[/bold red] after a 401 ({left}): "
                      "fix the key, then `cancelq dlq replay --all --outcome unauthorized`")
