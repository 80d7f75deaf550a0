"""`cancelq run RUN --follow`: a run's progress, live, from its counters (one HGETALL a poll).

On a terminal: a rich progress bar (done/total, rate, ETA) with the outcomes so far under
it, on stderr. Piped (a CI log, `nohup`): one plain line every `LOG_EVERY_SECONDS`. Either
way stdout gets only the final summary, so `--follow --json` stays parseable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import click
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cancelq.bulk.runs import RunProgress, run_progress
from cancelq.store.audit import AuditStore
from producers.cli.render import make_console

POLL_SECONDS = 0.5
LOG_EVERY_SECONDS = 5.0


@dataclass
class Pace:
    """Jobs finished per second since following began, and the time left at that pace."""

    started: float
    done_at_start: int

    def rate(self, progress: RunProgress, now: float) -> float:
        elapsed = now - self.started
        return (progress.done - self.done_at_start) / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self, progress: RunProgress, now: float) -> float | None:
        rate = self.rate(progress, now)
        return progress.pending / rate if rate > 0 else None


def outcomes_line(progress: RunProgress) -> str:
    mix = ", ".join(f"{name} {count:,}" for name, count in progress.outcomes.items())
    return f"outcomes: {mix or 'none yet'}"


def status_line(progress: RunProgress, pace: Pace, now: float) -> str:
    """One line for logs: `run X: 120/500 done (24.0%), 12.0 jobs/s, ETA 32 s; outcomes: ...`."""
    data = progress.to_json()
    eta = pace.eta_seconds(progress, now)
    return (f"run {progress.run_id}: {progress.done:,}/{progress.jobs:,} done "
            f"({data['percent']}%), {pace.rate(progress, now):,.1f} jobs/s, "
            f"ETA {_duration(eta)}; {outcomes_line(progress)}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _RunBar(Progress):
    """A progress bar with the outcomes so far on the line below it."""

    outcomes: Text = Text("")

    def get_renderables(self) -> Iterable[RenderableType]:
        table: Table = self.make_tasks_table(self.tasks)
        yield table
        yield self.outcomes


def follow(
    store: AuditStore, run_id: str, *, timeout: float | None, err: Console | None = None
) -> RunProgress:
    """Poll the run until every job is settled or dead, `timeout` passes, or Ctrl-C."""
    err = err or make_console(stderr=True)
    progress = run_progress(store, run_id)
    pace = Pace(time.monotonic(), progress.done)
    deadline = None if timeout is None else pace.started + timeout
    if err.is_terminal:
        return _follow_bar(store, progress, pace, deadline, err)
    return _follow_lines(store, progress, pace, deadline)


def _follow_bar(store: AuditStore, progress: RunProgress, pace: Pace, deadline: float | None,
                err: Console) -> RunProgress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"),
               TimeElapsedColumn())
    with _RunBar(*columns, console=err, transient=False) as bar:
        task = bar.add_task(f"run {escape(progress.run_id)}", total=progress.jobs,
                            rate="-", eta="-")
        while True:
            now = time.monotonic()
            bar.outcomes = Text(outcomes_line(progress))
            bar.update(task, total=progress.jobs, completed=progress.done,
                       rate=f"{pace.rate(progress, now):,.1f}/s",
                       eta=_duration(pace.eta_seconds(progress, now)))
            if _over(progress, deadline, now):
                return progress
            time.sleep(POLL_SECONDS)
            progress = run_progress(store, progress.run_id)


def _follow_lines(
    store: AuditStore, progress: RunProgress, pace: Pace, deadline: float | None
) -> RunProgress:
    last_line = float("-inf")
    while True:
        now = time.monotonic()
        if now - last_line >= LOG_EVERY_SECONDS or _over(progress, deadline, now):
            click.echo(status_line(progress, pace, now), err=True)  # one line, never wrapped
            last_line = now
        if _over(progress, deadline, now):
            return progress
        time.sleep(POLL_SECONDS)
        progress = run_progress(store, progress.run_id)


def _over(progress: RunProgress, deadline: float | None, now: float) -> bool:
    return progress.finished or (deadline is not None and now >= deadline)
