"""Human output: tables that fit the terminal (rich), for a terminal or a pipe.

Widths: the terminal's, or `COLUMNS`, or 80 when piped. A table's columns carry a priority:
the ones that do not fit are dropped, lowest priority first, so the job, its state and its
outcome always show at 80 columns; one free-text column may wrap into the room left. Every
cell is a `Text`, never markup, so a `[/x]` in a reason or an error is printed as typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cancelq.ops.lookup import short_ids
from cancelq.store.records import JobRecord
from producers.cli.times import cell_time, full_time

#: Kept for modules that print through a shared console; commands use `make_console()`.
console = Console(highlight=False)

#: Per-column cost of the default box: one space of padding each side, one rule.
COLUMN_OVERHEAD = 3
TIMES_NOTE = "times UTC"


def make_console(*, stderr: bool = False) -> Console:
    """A console sized now (terminal, `COLUMNS`, or 80 when piped): never a fixed width."""
    return Console(highlight=False, stderr=stderr)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    priority: int = 0  # 0 always shows; higher numbers are dropped first
    wrap: bool = False  # free text: takes what room is left, wraps, at least `min_width`
    min_width: int = 12
    justify: Literal["left", "right"] = "left"


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    title: str | None = None,
    caption: str | None = None,
) -> Table:
    """A table of the columns that fit `width`, chosen by priority, shown in their order."""
    kept, room = _fit(columns, rows, width)
    table = Table(title=title, caption=caption, header_style="bold", caption_justify="left")
    for i in kept:
        column = columns[i]
        table.add_column(
            column.header, justify=column.justify, no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
            min_width=room.get(i),
        )
    for row in rows:
        table.add_row(*(Text(row[i]) for i in kept))
    return table


def _fit(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[list[int], dict[int, int]]:
    """The columns kept, and the width each kept free-text column may take."""
    natural = [max([len(c.header), *(len(row[i]) for row in rows)])
               for i, c in enumerate(columns)]

    def need(i: int) -> int:
        size = min(natural[i], columns[i].min_width) if columns[i].wrap else natural[i]
        return size + COLUMN_OVERHEAD

    used = 1  # the right edge
    kept: set[int] = set()
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)):
        if columns[i].priority == 0 or used + need(i) <= width:
            kept.add(i)
            used += need(i)
    room: dict[int, int] = {}
    for i in sorted(kept):
        if columns[i].wrap:
            room[i] = min(natural[i], need(i) - COLUMN_OVERHEAD + max(0, width - used))
            used += room[i] - (need(i) - COLUMN_OVERHEAD)
    return sorted(kept), room


def limit_caption(shown: int, more: bool, limit: int) -> str | None:
    """The footer that says a list was cut, and how to see the rest."""
    if not more:
        return None
    return f"showing the newest {shown} (--limit {limit}); more match: raise --limit or filter"


def id_formatter(ids: Iterable[str], *, full: bool) -> Mapping[str, str]:
    listed = list(ids)
    return {i: i for i in listed} if full else short_ids(listed)


JOB_COLUMNS = (
    Column("job"),
    Column("state"),
    Column("outcome"),
    Column("tries", priority=1, justify="right"),
    Column("created", priority=1),
    Column("settled", priority=2),
    Column("case", priority=3),
    Column("event", priority=3),
    Column("run", priority=4),
    Column("reason", priority=5, wrap=True),
)


def jobs_table(
    records: Sequence[JobRecord],
    *,
    width: int,
    title: str | None = None,
    caption: str | None = None,
    full_ids: bool = False,
) -> Table:
    ids = id_formatter([r.job_id for r in records], full=full_ids)
    cases = id_formatter([r.case_id for r in records], full=full_ids)
    events = id_formatter([r.event_id for r in records], full=full_ids)
    rows = [
        (
            ids[r.job_id], r.state.value, r.outcome or "-", str(r.attempt_count),
            cell_time(r.created_at), cell_time(r.settled_at), cases[r.case_id],
            events[r.event_id], r.run_id or "-", r.reason or "",
        )
        for r in records
    ]
    return fit_table(JOB_COLUMNS, rows, width=width, title=title, caption=caption)


ATTEMPT_COLUMNS = (
    Column("#", justify="right"),
    Column("started"),
    Column("ms", priority=2, justify="right"),
    Column("http"),
    Column("verdict"),
    Column("error", priority=1, wrap=True, min_width=24),
)

DETAIL_FIELDS = ("job_id", "case_id", "event_id", "run_id", "requested_by", "reason", "queue",
                 "state", "outcome", "attempt_count")
DETAIL_TIMES = ("created_at", "updated_at", "settled_at", "next_attempt_at")


def job_detail(out: Console, record: JobRecord) -> None:
    """A job's fields (user text escaped), then its attempts."""
    data = record.to_json()
    for name in DETAIL_FIELDS:
        value = data[name]
        if value not in (None, ""):
            out.print(f"[bold]{name:>15}[/bold]  {escape(str(value))}")
    for name in DETAIL_TIMES:
        ts = getattr(record, name)
        if ts is not None:
            out.print(f"[bold]{name:>15}[/bold]  {full_time(ts)}")
    rows = [
        (
            str(a.number or "-"), cell_time(a.started_at),
            "-" if a.duration_ms is None else f"{a.duration_ms:.0f}",
            str(a.http_status or "-"), a.verdict or "-", a.error or "",
        )
        for a in record.attempts
    ]
    if not rows:
        out.print(f"[bold]{'attempts':>15}[/bold]  none yet")
        return
    out.print(fit_table(ATTEMPT_COLUMNS, rows, width=out.width,
                        title=f"attempts ({TIMES_NOTE})"))


def counts_table(title: str, counts: Mapping[str, int]) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(Text(name), f"{count:,}")
    return table


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle (`head...tail`): a long value
    in a line of prose keeps its start and end; `--json` has it whole."""
    if len(text) <= width:
        return text
    keep = max(2, width - 3)
    head = (keep + 1) // 2
    return text[:head] + "..." + text[len(text) - (keep - head):]


def print_whole(out: Console, text: str) -> None:
    """A line meant to be copied (an id, a command): never broken by us. It is printed on
    its own line as one piece; if the terminal is narrower, the terminal wraps it softly,
    which copies back as one line."""
    out.print(Text(text), soft_wrap=True, overflow="ignore", crop=False)
