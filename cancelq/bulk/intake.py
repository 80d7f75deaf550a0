"""Bulk intake: a CSV or JSON-lines file of cancellations into the bulk queue, streaming.

    read_rows(stream, fmt)      -> Row | BadRow, one per data row, with its line number
    intake(rows, store=...)     -> BulkSummary  (chunks of CHUNK_ROWS, one Lua call each)

Memory does not grow with the file: rows are read lazily and sent a chunk at a time, bad rows
are counted (only the first MAX_REPORTED_BAD_ROWS are kept for the summary), and duplicates
are not remembered here at all. The store's pair keys already say which (case, event) has a
live job, and `enqueue_many.lua` checks them row by row, so a row repeating an earlier row of
the same file (the earlier one's job now exists) comes back as a duplicate just like a row
whose pair the store already had. A dry run cannot ask the store, so it reports no
duplicate count (None).

Every row is validated by the message contract (`CancelRequest`), the same rules as
`cancelq enqueue` and the task itself.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import InvalidInput
from cancelq.store.audit import AuditStore
from cancelq.store.records import Enqueued

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
REQUIRED_COLUMNS = ("case_id", "event_id")
OPTIONAL_COLUMNS = ("reason",)

CHUNK_ROWS = 1_000
MAX_REPORTED_BAD_ROWS = 100
_SAMPLE_IDS = ("00000000-0000-4000-8000-000000000000",) * 2

Row = BulkRow


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error}


Parsed = Row | BadRow


@dataclass
class BulkSummary:
    """What a bulk run did. `duplicates` is None for a dry run (the store was not asked)."""

    run_id: str
    dry_run: bool = False
    rows: int = 0
    accepted: int = 0
    duplicates: int | None = 0
    invalid: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0

    def add_bad(self, bad: BadRow) -> None:
        self.invalid += 1
        if len(self.bad_rows) < MAX_REPORTED_BAD_ROWS:
            self.bad_rows.append(bad)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The documented, stable `cancelq bulk --json` summary."""
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "invalid_rows": [bad.to_json() for bad in self.bad_rows],
            "invalid_rows_truncated": self.invalid > len(self.bad_rows),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
        }


class FileError(InvalidInput):
    """The file as a whole cannot be read as bulk input (format, header, encoding)."""

    def __init__(self, problem: str) -> None:
        super().__init__("FILE", problem)


# -- reading ------------------------------------------------------------------------------


def new_run_id(prefix: str = "bulk") -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def format_for(name: str | None, first_line: bytes = b"") -> Format:
    """From the file name's suffix, else from the first line (`{` starts JSON lines)."""
    if name:
        for suffix, fmt in SUFFIXES.items():
            if name.lower().endswith(suffix):
                return fmt
    return "jsonl" if first_line.lstrip(codecs.BOM_UTF8).lstrip().startswith(b"{") else "csv"


class ByteCount:
    """How far into the stream reading has got (for a progress bar on a file)."""

    def __init__(self) -> None:
        self.value = 0


def _lines(stream: Iterable[bytes], counter: ByteCount) -> Iterator[str]:
    first = True
    for raw in stream:
        counter.value += len(raw)
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            first = False
        yield raw.decode("utf-8", errors="replace")


def _validated(line: int, case_id: object, event_id: object, reason: object) -> Parsed:
    try:
        request = CancelRequest.parse(case_id=case_id, event_id=event_id, reason=reason)
    except InvalidInput as exc:
        return BadRow(line, str(exc))
    return Row(line, request.case_id, request.event_id, request.reason)


def read_rows(
    stream: Iterable[bytes], fmt: Format, counter: ByteCount | None = None
) -> Iterator[Parsed]:
    """Each data row of `stream` (a binary file, or any lines of bytes), validated, with its
    (first) line number. Lazy."""
    lines = _lines(stream, counter or ByteCount())
    if fmt == "csv":
        return _csv_rows(lines)
    return _jsonl_rows(lines)


def _csv_rows(lines: Iterator[str]) -> Iterator[Parsed]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for record in reader:
        if record:
            header = [name.strip().lower() for name in record]
            break
    if header is None:
        raise FileError("empty: no header line")
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise FileError(
            f"CSV header must name {' and '.join(REQUIRED_COLUMNS)} (missing {', '.join(missing)};"
            f" got {','.join(header)[:120]!r})"
        )
    i_case, i_event = header.index("case_id"), header.index("event_id")
    i_reason = header.index("reason") if "reason" in header else None
    needed = max(i_case, i_event) + 1
    start = reader.line_num + 1
    for record in reader:
        line, start = start, reader.line_num + 1
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) < needed:
            yield BadRow(line, f"expected {len(header)} columns, got {len(record)}")
            continue
        reason = record[i_reason] if i_reason is not None and i_reason < len(record) else None
        yield _validated(line, record[i_case], record[i_event], reason)


def _jsonl_rows(lines: Iterator[str]) -> Iterator[Parsed]:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield BadRow(line, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield BadRow(line, "not a JSON object")
            continue
        missing = [name for name in REQUIRED_COLUMNS if name not in data]
        if missing:
            yield BadRow(line, f"{missing[0]}: required")
            continue
        yield _validated(line, data["case_id"], data["event_id"], data.get("reason"))


# -- intake -------------------------------------------------------------------------------


def check_run(run_id: str, requested_by: str | None) -> tuple[str, str | None]:
    """The run id and requester as the contract normalizes them, checked once."""
    request = CancelRequest.parse(
        case_id=_SAMPLE_IDS[0], event_id=_SAMPLE_IDS[1], run_id=run_id, requested_by=requested_by
    )
    if not request.run_id:
        raise InvalidInput("run_id", "must not be empty")
    return request.run_id, request.requested_by


ProgressHook = Callable[[BulkSummary], None]
BadRowHook = Callable[[BadRow], None]


def intake(
    rows: Iterable[Parsed],
    *,
    run_id: str,
    store: AuditStore | None,
    requested_by: str | None = None,
    dry_run: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    on_bad_row: BadRowHook | None = None,
    on_chunk: ProgressHook | None = None,
    counter: ByteCount | None = None,
) -> BulkSummary:
    """Validate, de-duplicate and enqueue `rows` on the bulk queue as run `run_id`.

    With `dry_run` (or no store) nothing is written: rows are validated and counted.
    `on_chunk` is called after every chunk (progress bars, lock renewal).
    """
    run_id, requested_by = check_run(run_id, requested_by)
    if not dry_run and store is None:
        raise ValueError("a store is needed unless dry_run")
    summary = BulkSummary(run_id=run_id, dry_run=dry_run, duplicates=None if dry_run else 0)
    writer = None if dry_run or store is None else BulkWriter(
        store, run_id=run_id, requested_by=requested_by
    )
    started = time.perf_counter()
    chunk: list[Row] = []
    # Redis runs one chunk's script while this process reads and builds the next one: at
    # most one chunk in flight, so memory stays at two chunks whatever the file's size.
    in_flight: Callable[[], list[Enqueued]] | None = None

    def collect() -> None:
        nonlocal in_flight
        if in_flight is None:
            return
        results, in_flight = in_flight(), None
        duplicates = sum(1 for result in results if result.duplicate)
        summary.duplicates = (summary.duplicates or 0) + duplicates
        summary.accepted += len(results) - duplicates

    def flush(final: bool = False) -> None:
        nonlocal chunk, in_flight
        collect()
        if writer is not None and chunk:
            in_flight = writer.start(chunk)
        elif writer is None:
            summary.accepted += len(chunk)
        chunk = []
        if final:
            collect()
        if counter is not None:
            summary.bytes_read = counter.value
        summary.seconds = time.perf_counter() - started
        if on_chunk is not None:
            on_chunk(summary)

    try:
        for parsed in rows:
            summary.rows += 1
            if isinstance(parsed, BadRow):
                summary.add_bad(parsed)
                if on_bad_row is not None:
                    on_bad_row(parsed)
            else:
                chunk.append(parsed)
            if summary.rows % chunk_rows == 0:
                flush()
    except BaseException:
        with contextlib.suppress(Exception):
            collect()  # the chunk already sent was applied: read its reply, free the connection
        raise
    flush(final=True)
    return summary
