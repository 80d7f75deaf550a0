"""Human output: readable tables of jobs and attempts (rich), for a terminal or a pipe."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from rich.console import Console
from rich.table import Table

from cancelq.store.records import JobRecord

console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)


def _short(ts: str | None) -> str:
    return (ts or "-").replace("T", " ").removesuffix("Z")[:19]


def jobs_table(records: Iterable[JobRecord], *, title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in ("job", "case", "event", "state", "outcome", "tries", "created", "settled"):
        table.add_column(column, no_wrap=True)
    for record in records:
        data = record.to_json()
        table.add_row(
            record.job_id,
            record.case_id,
            record.event_id,
            record.state.value,
            record.outcome or "-",
            str(record.attempt_count),
            _short(data["created_at"]),
            _short(data["settled_at"]),
        )
    return table


def job_detail(record: JobRecord) -> None:
    data = record.to_json()
    for name in ("job_id", "case_id", "event_id", "run_id", "requested_by", "reason", "queue",
                 "state", "outcome", "attempt_count", "created_at", "updated_at",
                 "settled_at", "next_attempt_at"):
        value = data[name]
        if value not in (None, ""):
            console.print(f"[bold]{name:>15}[/bold]  {value}")
    table = Table(title="attempts", header_style="bold")
    for column in ("#", "started", "ms", "http", "verdict", "error"):
        table.add_column(column, no_wrap=column != "error")
    for attempt in data["attempts"]:
        table.add_row(
            str(attempt["number"] or "-"),
            _short(attempt["started_at"]),
            "-" if attempt["duration_ms"] is None else f"{attempt['duration_ms']:.0f}",
            str(attempt["http_status"] or "-"),
            attempt["verdict"] or "-",
            attempt["error"] or "",
        )
    console.print(table)


def counts_table(title: str, counts: Mapping[str, int]) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(name, str(count))
    return table
