"""`cancelq stats`: the live view, from counters the store keeps (no keyspace scan)."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cancelq.bulk.runs import run_progress
from cancelq.ops.stats import Snapshot, snapshot
from cancelq.store.audit import AuditStore
from producers.cli.common import (
    EXIT_FAILED,
    epilog,
    fail,
    one_line_errors,
    print_json,
    store_from_env,
)
from producers.cli.render import make_console


@click.command(epilog=epilog(
    "cancelq stats",
    "cancelq stats --run clinic-42 --json",
    "cancelq stats --watch 2          # refresh every 2 s; Ctrl-C leaves (exit 0)",
    "cancelq stats --watch 10 --json  # one JSON object per line, every 10 s",
))
@click.option("--run", "run_id", help="Counts for this run only (queues stay global).")
@click.option("--watch", "every", type=click.FloatRange(min=0.2), metavar="SECONDS",
              help="Refresh every SECONDS until Ctrl-C (which exits 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as one JSON object.")
@one_line_errors
def stats(run_id: str | None, every: float | None, as_json: bool) -> None:
    """Jobs per state and outcome, queue depths, oldest waiting job, calls in the last minute."""
    with store_from_env() as (_, store):
        if run_id is not None and not run_progress(store, run_id).exists:
            fail(f"--run: no run {run_id!r} (cancelq runs lists them)", EXIT_FAILED)
        if every is None:
            snap = snapshot(store, run_id=run_id)
            if as_json:
                print_json(snap.to_json())
            else:
                make_console().print(render(snap))
            return
        try:
            _watch(store, run_id, every, as_json)
        except KeyboardInterrupt:
            pass  # leaving a watch is the normal way out: exit 0


def _watch(store: AuditStore, run_id: str | None, every: float, as_json: bool) -> None:
    if as_json:
        while True:
            click.echo(json.dumps(snapshot(store, run_id=run_id).to_json()))
            time.sleep(every)
    out = make_console()
    with Live(render(snapshot(store, run_id=run_id)), console=out, auto_refresh=False,
              screen=False) as live:
        while True:
            time.sleep(every)
            live.update(render(snapshot(store, run_id=run_id)), refresh=True)


def render(snap: Snapshot) -> RenderableType:
    """The whole view as one renderable (printed once, or refreshed by --watch)."""
    data = snap.to_json()
    scope = f"run {escape(snap.run_id)}" if snap.run_id else "all runs"
    head = Text.from_markup(
        f"[bold]cancelq stats[/bold] ({scope}) at {data['taken_at']}\n"
        f"jobs {snap.jobs:,}   attempts {snap.attempts:,}   replays {snap.replays:,}   "
        f"dead letters {snap.dead_letters:,}"
    )
    parts: list[RenderableType] = [head, _jobs(snap), _queues(snap), Text(_oldest(snap))]
    mix = ", ".join(f"{status}: {n}" for status, n in snap.calls_last_minute.items()) or "-"
    parts.append(Text(f"calls in the last minute: {snap.calls_total} ({mix})"))
    parts.append(_breaker(snap, data))
    if snap.auth_blocked_seconds is not None:
        left = ("until cleared" if snap.auth_blocked_seconds < 0
                else f"{snap.auth_blocked_seconds:.0f}s left")
        parts.append(Text.from_markup(
            f"[bold red]auth blocked[/bold red] after a 401 ({left}): fix the key, then "
            "`cancelq dlq replay --all --outcome unauthorized`"))
    return Group(*parts)


def _jobs(snap: Snapshot) -> Table:
    jobs = Table(title="jobs", header_style="bold")
    jobs.add_column("state")
    jobs.add_column("count", justify="right")
    for name, count in snap.states.items():
        jobs.add_row(name, f"{count:,}")
    for name, count in snap.outcomes.items():
        jobs.add_row(Text(f"  outcome {name}"), f"{count:,}")
    return jobs


def _queues(snap: Snapshot) -> Table:
    queues = Table(title="queues", header_style="bold")
    for column in ("queue", "ready", "by priority"):
        queues.add_column(column, justify="right" if column == "ready" else "left")
    for depth in snap.queues:
        steps = " ".join(f"{p}:{n}" for p, n in depth.by_priority.items())
        queues.add_row(Text(depth.name), f"{depth.ready:,}", steps)
    queues.add_row("delayed (retries, deferrals)", f"{snap.delayed:,}", "")
    queues.add_row("unacked (held by workers)", f"{snap.unacked:,}", "")
    if snap.delayed_bad:
        queues.add_row("delayed entries set aside (bad)", f"{snap.delayed_bad:,}", "")
    return queues


def _oldest(snap: Snapshot) -> str:
    if snap.oldest_queued_job is None:
        return "oldest waiting job: none"
    return (f"oldest waiting job: {snap.oldest_queued_job}, "
            f"{snap.oldest_queued_age_seconds:.1f}s since created")


def _breaker(snap: Snapshot, data: dict[str, Any]) -> Text:
    breaker = snap.breaker
    if breaker.state == "closed":
        return Text(f"circuit breaker closed ({breaker.failures} consecutive failures)")
    return Text.from_markup(
        f"[bold red]circuit breaker {escape(breaker.state)}[/bold red] since "
        f"{escape(str(data['breaker']['opened_at']))}: Care360 failing, jobs wait for a probe")
