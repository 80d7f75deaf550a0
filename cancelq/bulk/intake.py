"""Bulk intake: a CSV or JSON-lines file of cancellations into the bulk queue, streaming.

    read_rows(stream, fmt)      -> Row | BadRow | BlankRow, one per data row, with its line
                                   number (a blank line or `,,` is a BlankRow: counted, not sent)
    intake(rows, store=...)     -> BulkSummary  (chunks of CHUNK_ROWS, one Lua call each,
                                                 jobs sent BULK_BATCH_SIZE to a message)

Memory does not grow with the file: rows are read lazily and sent a chunk at a time, bad rows
are counted (only the first MAX_REPORTED_BAD_ROWS are kept for the summary), and duplicates
are not remembered here at all. The store's pair keys already say which (case, event) has a
live job, and `enqueue_many.lua` checks them row by row, so a row repeating an earlier row of
the same file (the earlier one's job now exists) comes back as a duplicate just like a row
whose pair the store already had. A dry run cannot ask the store, so it reports no
duplicate count (None).

Nothing in a row stops the file: a line longer than `Limits.max_line_bytes` (read up to the
limit, the rest skipped unread into memory), a field longer than `Limits.max_field_chars`,
bytes that are not UTF-8, a NUL byte, a CSV record the csv module refuses, a JSON line that
is not an object: each is one `BadRow` with its line number, and reading goes on at the next
line. Only a file whose CSV header cannot be read is refused whole (`FileError`).

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
from typing import Any, Literal, Protocol

from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.contract import CancelRequest
from cancelq.core.errors import InvalidInput
from cancelq.core.settings import (
    DEFAULT_BULK_BATCH_SIZE,
    DEFAULT_BULK_MAX_FIELD_CHARS,
    DEFAULT_BULK_MAX_LINE_BYTES,
    Settings,
)
from cancelq.store import run_index
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
class Limits:
    """How much of one row is ever read (`BULK_MAX_FIELD_CHARS`, `BULK_MAX_LINE_BYTES`), and
    how many jobs go in one message (`BULK_BATCH_SIZE`): the bulk settings, in one place for
    the CLI and the inbox alike."""

    max_field_chars: int = DEFAULT_BULK_MAX_FIELD_CHARS
    max_line_bytes: int = DEFAULT_BULK_MAX_LINE_BYTES
    batch_size: int = DEFAULT_BULK_BATCH_SIZE

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.bulk_max_field_chars, settings.bulk_max_line_bytes,
                   settings.bulk_batch_size)


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error}


@dataclass(frozen=True, slots=True)
class BlankRow:
    """A data line with nothing in it (an empty line, or only empty fields such as `,,`):
    not a request and not an error, but still a line of the file, so it is counted (`blank`)
    and every data line shows in the summary."""

    line: int


Parsed = Row | BadRow | BlankRow


@dataclass
class BulkSummary:
    """What a bulk run did. `duplicates` is None for a dry run (the store was not asked).

    Every data line is in exactly one count: rows = accepted + duplicates + invalid + blank
    (a dry run's accepted rows include those the store would have called duplicates)."""

    run_id: str
    dry_run: bool = False
    rows: int = 0
    accepted: int = 0
    duplicates: int | None = 0
    invalid: int = 0
    blank: int = 0
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
            "blank": self.blank,
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


class Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One physical line: its number, and its text or why it cannot be used."""

    number: int
    text: str = ""
    problem: str | None = None


def _chunks(stream: Readable | Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Pieces of at most `limit` + 1 bytes, ending at a newline unless longer than that."""
    if hasattr(stream, "readline"):
        readline = stream.readline
        return iter(lambda: readline(limit + 1), b"")
    return iter(stream)  # lines already (tests, a list of bytes)


def physical_lines(
    stream: Readable | Iterable[bytes], counter: ByteCount, limits: Limits
) -> Iterator[Line]:
    """Each line of `stream`, decoded; an over-long, non-UTF-8 or NUL line has a problem."""
    number, long_line, first = 0, False, True
    for raw in _chunks(stream, limits.max_line_bytes):
        counter.value += len(raw)
        if long_line:  # the rest of a line already reported: skip it
            long_line = not raw.endswith(b"\n")
            continue
        number += 1
        if first:
            raw, first = raw.removeprefix(codecs.BOM_UTF8), False
        if len(raw) > limits.max_line_bytes:
            long_line = not raw.endswith(b"\n")
            yield Line(number, problem=f"line longer than {limits.max_line_bytes} bytes")
            continue
        yield _decoded(number, raw)


def _decoded(number: int, raw: bytes) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Line(number, problem=f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                    f"column {exc.start + 1})")
    if "\0" in text:
        return Line(number, problem="contains a NUL byte (a binary file?)")
    return Line(number, text)


def _validated(line: int, case_id: object, event_id: object, reason: object) -> Parsed:
    try:
        request = CancelRequest.parse(case_id=case_id, event_id=event_id, reason=reason)
    except InvalidInput as exc:
        return BadRow(line, str(exc))
    return Row(line, request.case_id, request.event_id, request.reason)


def read_rows(
    stream: Readable | Iterable[bytes],
    fmt: Format,
    counter: ByteCount | None = None,
    limits: Limits | None = None,
) -> Iterator[Parsed]:
    """Each data row of `stream` (a binary file, or any lines of bytes), validated, with its
    (first) line number. Lazy."""
    limits = limits or Limits()
    lines = physical_lines(stream, counter or ByteCount(), limits)
    if fmt == "csv":
        return _csv_rows(lines, limits)
    return _jsonl_rows(lines, limits)


# -- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV record (a quoted field may span lines): its first line, its fields or a
    problem."""

    line: int
    fields: list[str] = field(default_factory=list)
    problem: str | None = None


def csv_records(lines: Iterator[Line]) -> Iterator[Record]:
    """Records from physical lines, each with its first line's number.

    The csv module reads runs of good lines; a bad line ends the run (and is a bad record
    of its own), and a new reader starts after it, so one bad line spoils at most the
    record it falls in. The csv module's own field limit (131,072 characters) bounds what an
    unclosed quote can swallow: past it, that record is bad and reading goes on.
    """
    bad: list[Line] = []
    for first in lines:
        if first.problem is not None:
            yield Record(first.number, problem=first.problem)
            continue
        yield from _csv_run(first, lines, bad)
        if bad:
            line = bad.pop()
            yield Record(line.number, problem=line.problem)


def _csv_run(first: Line, lines: Iterator[Line], bad: list[Line]) -> Iterator[Record]:
    """The records of the good lines from `first` up to the next bad one (left in `bad`)."""

    def good() -> Iterator[str]:
        yield first.text
        for line in lines:
            if line.problem is not None:
                bad.append(line)
                return
            yield line.text

    reader = csv.reader(good())
    offset = first.number - 1
    while True:
        start = offset + reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(start, problem=f"not CSV: {exc}")
            continue
        if bad and fields and fields[-1].endswith(("\n", "\r")):
            # a quoted field still open when the bad line ended the run: cut short
            yield Record(start, problem=f"a quoted field cut by the bad line {bad[0].number}")
            continue
        yield Record(start, fields)


@dataclass(frozen=True, slots=True)
class Columns:
    names: list[str]
    case: int
    event: int
    reason: int | None

    @classmethod
    def from_header(cls, record: Record | None) -> Columns:
        if record is None:
            raise FileError("empty: no header line")
        if record.problem is not None:
            raise FileError(f"line {record.line}: header unreadable: {record.problem}")
        names = [name.strip().lower() for name in record.fields]
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if missing:
            raise FileError(
                f"CSV header must name {' and '.join(REQUIRED_COLUMNS)} (missing "
                f"{', '.join(missing)}; got {','.join(names)[:120]!r})"
            )
        reason = names.index("reason") if "reason" in names else None
        return cls(names, names.index("case_id"), names.index("event_id"), reason)

    def row(self, record: Record, limits: Limits) -> Parsed:
        if record.problem is not None:
            return BadRow(record.line, record.problem)
        values = record.fields
        if len(values) <= max(self.case, self.event):
            return BadRow(record.line, f"expected {len(self.names)} columns, got {len(values)}")
        for i, value in enumerate(values):
            if len(value) > limits.max_field_chars:
                name = self.names[i] if i < len(self.names) else f"column {i + 1}"
                return BadRow(record.line,
                              f"{name}: longer than {limits.max_field_chars} characters")
        reason = values[self.reason] if self.reason is not None and self.reason < len(values) \
            else None
        return _validated(record.line, values[self.case], values[self.event], reason)


def _blank(record: Record) -> bool:
    return record.problem is None and not any(value.strip() for value in record.fields)


def _csv_rows(lines: Iterator[Line], limits: Limits) -> Iterator[Parsed]:
    """Blank lines before the header are not data and are skipped; after it, a blank record
    (an empty line, or `,,`) is a `BlankRow`, so the summary still counts it."""
    records = csv_records(lines)
    columns = Columns.from_header(next((r for r in records if not _blank(r)), None))
    for record in records:
        yield BlankRow(record.line) if _blank(record) else columns.row(record, limits)


# -- JSON lines -----------------------------------------------------------------------------


def _jsonl_rows(lines: Iterator[Line], limits: Limits) -> Iterator[Parsed]:
    for line in lines:
        if line.problem is not None:
            yield BadRow(line.number, line.problem)
        elif line.text.strip():
            yield _json_row(line, limits)
        else:
            yield BlankRow(line.number)


def _json_row(line: Line, limits: Limits) -> Parsed:
    try:
        data = json.loads(line.text)
    except json.JSONDecodeError as exc:
        return BadRow(line.number, f"not JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return BadRow(line.number, "not JSON: nested too deeply")
    if not isinstance(data, dict):
        return BadRow(line.number, "not a JSON object")
    missing = [name for name in REQUIRED_COLUMNS if name not in data]
    if missing:
        return BadRow(line.number, f"{missing[0]}: required")
    for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        value = data.get(name)
        if isinstance(value, str) and len(value) > limits.max_field_chars:
            return BadRow(line.number, f"{name}: longer than {limits.max_field_chars} characters")
    return _validated(line.number, data["case_id"], data["event_id"], data.get("reason"))


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
    batch_size: int = DEFAULT_BULK_BATCH_SIZE,
    on_bad_row: BadRowHook | None = None,
    on_chunk: ProgressHook | None = None,
    counter: ByteCount | None = None,
    summary: BulkSummary | None = None,
) -> BulkSummary:
    """Validate, de-duplicate and enqueue `rows` on the bulk queue as run `run_id`.

    With `dry_run` (or no store) nothing is written: rows are validated and counted.
    Each chunk of `chunk_rows` rows is one script call, its new jobs sent in messages of
    `batch_size` jobs at most (`Limits.batch_size`; a batch never spans two chunks).
    `on_chunk` is called after every chunk (progress bars, lock renewal). Pass `summary` to
    keep the counts so far if something (Redis) fails half-way.
    """
    run_id, requested_by = check_run(run_id, requested_by)
    if not dry_run and store is None:
        raise ValueError("a store is needed unless dry_run")
    if summary is None:
        summary = BulkSummary(run_id=run_id)
    summary.run_id, summary.dry_run = run_id, dry_run
    summary.duplicates = None if dry_run else 0
    writer = None if dry_run or store is None else BulkWriter(
        store, run_id=run_id, requested_by=requested_by, batch_size=batch_size
    )
    run = _Intake(summary, writer, on_chunk=on_chunk, counter=counter)
    try:
        for parsed in rows:
            run.add(parsed, on_bad_row)
            if summary.rows % chunk_rows == 0:
                run.flush()
    except BaseException:
        with contextlib.suppress(Exception):
            run.collect()  # the chunk already sent was applied: read its reply, free the connection
        raise
    run.flush(final=True)
    if writer is not None and store is not None:
        keep_intake(store, summary)
    return summary


def keep_intake(store: AuditStore, summary: BulkSummary) -> None:
    """Store the summary's counts and first bad lines with the run: `cancelq run RUN` shows
    them to whoever looks later, not only to the terminal that ran `cancelq bulk`."""
    counts = {"rows": summary.rows, "accepted": summary.accepted,
              "duplicates": summary.duplicates or 0, "invalid": summary.invalid,
              "blank": summary.blank}
    run_index.record_intake(store, summary.run_id, counts,
                            [(bad.line, bad.error) for bad in summary.bad_rows])


class _Intake:
    """One run's state: the chunk being built and the one in flight.

    Redis runs one chunk's script while this process reads and builds the next one: at most
    one chunk in flight, so memory stays at two chunks whatever the file's size.
    """

    def __init__(
        self,
        summary: BulkSummary,
        writer: BulkWriter | None,
        *,
        on_chunk: ProgressHook | None,
        counter: ByteCount | None,
    ) -> None:
        self.summary = summary
        self.writer = writer
        self.on_chunk = on_chunk
        self.counter = counter
        self.chunk: list[Row] = []
        self.in_flight: Callable[[], list[Enqueued]] | None = None
        self.started = time.perf_counter()

    def add(self, parsed: Parsed, on_bad_row: BadRowHook | None) -> None:
        self.summary.rows += 1
        if isinstance(parsed, BlankRow):
            self.summary.blank += 1
        elif isinstance(parsed, BadRow):
            self.summary.add_bad(parsed)
            if on_bad_row is not None:
                on_bad_row(parsed)
        else:
            self.chunk.append(parsed)

    def collect(self) -> None:
        """Read the reply of the chunk in flight, if any, into the counts."""
        if self.in_flight is None:
            return
        results, self.in_flight = self.in_flight(), None
        duplicates = sum(1 for result in results if result.duplicate)
        self.summary.duplicates = (self.summary.duplicates or 0) + duplicates
        self.summary.accepted += len(results) - duplicates

    def flush(self, final: bool = False) -> None:
        """Send the chunk (after collecting the one before), then report progress."""
        self.collect()
        if self.writer is not None and self.chunk:
            self.in_flight = self.writer.start(self.chunk)
        elif self.writer is None:
            self.summary.accepted += len(self.chunk)
        self.chunk = []
        if final:
            self.collect()
        if self.counter is not None:
            self.summary.bytes_read = self.counter.value
        self.summary.seconds = time.perf_counter() - self.started
        if self.on_chunk is not None:
            self.on_chunk(self.summary)
