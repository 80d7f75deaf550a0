"""Issue 11: `cancelq bulk` never stops on a bad row.

Oversized lines and fields (the csv module's 131,072-character limit included), bytes that
are not UTF-8, NUL bytes, a binary file, JSON lines that are not objects: each is one bad row
with its line number, the rows after it are still read, and the summary always prints.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cancelq.bulk.intake import BadRow, BlankRow, Limits, Parsed, Row, intake, read_rows
from cancelq.store.audit import AuditStore
from tests.conftest import ROOT


def _id() -> str:
    return str(uuid.uuid4())


def rows_of(data: bytes, fmt: str = "csv", limits: Limits | None = None) -> list[Parsed]:
    return list(read_rows(io.BytesIO(data), fmt, limits=limits))  # type: ignore[arg-type]


def bad(rows: list[Parsed]) -> list[tuple[int, str]]:
    return [(r.line, r.error) for r in rows if isinstance(r, BadRow)]


def good_lines(rows: list[Parsed]) -> list[int]:
    return [r.line for r in rows if isinstance(r, Row)]


def test_every_kind_of_bad_csv_row_is_reported_and_the_rest_is_read() -> None:
    ok = [f"{_id()},{_id()},fine".encode() for _ in range(4)]
    data = b"\n".join([
        b"case_id,event_id,reason",
        ok[0],                                                  # 2
        f"{_id()},{_id()},".encode() + b"r" * 10_000_000,       # 3: a 10 MB reason
        f'{_id()},{_id()},"'.encode() + b"q" * 200_000 + b'"',  # 4: over csv's 131,072
        f"{_id()},{_id()},".encode() + b"\xff\xfe latin?",      # 5: not UTF-8
        f"{_id()},{_id()},nul\x00here".encode(),                # 6: a NUL byte
        ok[1],                                                  # 7
        f"{_id()},{_id()},{'w' * 5000}".encode(),               # 8: a field over the limit
        f"{{{_id()}}},{_id()},braced".encode(),                 # 9: not a canonical UUID
        ok[2],                                                  # 10
        ok[3],                                                  # 11
    ]) + b"\n"
    rows = rows_of(data)
    assert good_lines(rows) == [2, 7, 10, 11]
    problems = dict(bad(rows))
    assert problems[3] == problems[4] == "line longer than 65536 bytes"
    assert problems[5] == "not UTF-8 text (byte 0xff at column 75)"
    assert problems[6] == "contains a NUL byte (a binary file?)"
    assert problems[8] == "reason: longer than 4096 characters"
    assert problems[9].startswith("case_id: not a canonical UUID")


def test_limits_are_settings() -> None:
    data = f"case_id,event_id,reason\n{_id()},{_id()},{'x' * 300}\n".encode()
    assert good_lines(rows_of(data)) == [2]
    [(line, error)] = bad(rows_of(data, limits=Limits(max_field_chars=100, max_line_bytes=256)))
    assert line == 2 and error == "line longer than 256 bytes"
    [(line, error)] = bad(rows_of(data, limits=Limits(max_field_chars=100)))
    assert error == "reason: longer than 100 characters"


def test_a_bad_line_inside_a_quoted_field_spoils_only_that_record() -> None:
    first, last = (_id(), _id()), (_id(), _id())
    data = (f'case_id,event_id,reason\n{_id()},{_id()},"starts here\n'.encode()
            + b"\xff\n" + f"{first[0]},{first[1]},ok\n{last[0]},{last[1]}\n".encode())
    rows = rows_of(data)
    assert [r.line for r in rows if isinstance(r, Row)] == [4, 5]
    assert (3, "not UTF-8 text (byte 0xff at column 1)") in bad(rows)


def test_an_unclosed_quote_cannot_swallow_the_file_unbounded() -> None:
    body = b"".join(f"{_id()},{_id()},r\n".encode() for _ in range(5000))  # ~380 KB
    rows = rows_of(b'case_id,event_id,reason\n' + f'{_id()},{_id()},"open\n'.encode() + body)
    assert bad(rows) and all(isinstance(r, Row | BadRow) for r in rows)
    assert len(rows) < 5000  # the open quote took lines, until the csv field limit said no


def test_jsonl_lines_that_are_not_objects() -> None:
    good = json.dumps({"case_id": _id(), "event_id": _id()}).encode()
    data = b"\n".join([
        good, b"[1, 2]", b'"text"', b"42", b"null", b"[" * 50_000, b"\xc3\x28",
        b'{"case_id": "' + b"z" * 100_000 + b'"}', b"{\x00}", good,
    ]) + b"\n"
    rows = rows_of(data, "jsonl")
    assert good_lines(rows) == [1, 10]
    assert bad(rows) == [
        (2, "not a JSON object"), (3, "not a JSON object"), (4, "not a JSON object"),
        (5, "not a JSON object"), (6, "not JSON: nested too deeply"),
        (7, "not UTF-8 text (byte 0xc3 at column 1)"), (8, "line longer than 65536 bytes"),
        (9, "contains a NUL byte (a binary file?)"),
    ]


def test_a_binary_file_as_json_lines_is_all_bad_rows_and_no_crash() -> None:
    data = os.urandom(1_000_000)
    rows = rows_of(data, "jsonl")
    assert rows and all(isinstance(r, BadRow | BlankRow) for r in rows)  # an empty line: blank
    assert [r.line for r in rows] == sorted(r.line for r in rows)


def test_intake_sends_the_good_rows_around_the_bad_ones(fake_store: AuditStore) -> None:
    pairs = [(_id(), _id()) for _ in range(3)]
    data = (b"case_id,event_id\n" + f"{pairs[0][0]},{pairs[0][1]}\n".encode()
            + b"\x00" * 300_000 + b"\n" + f"{pairs[1][0]},{pairs[1][1]}\n".encode()
            + b"x" * 200_000 + b"\n" + f"{pairs[2][0]},{pairs[2][1]}\n".encode())
    summary = intake(read_rows(io.BytesIO(data), "csv"), run_id="r", store=fake_store)
    assert (summary.rows, summary.accepted, summary.invalid) == (5, 3, 2)
    assert all(fake_store.job_for_pair(*pair) for pair in pairs)


# -- property-based: the row parser never raises, never loses a good row ---------------------

_junk = st.binary(max_size=400).filter(lambda b: b"\n" not in b)


@given(st.lists(st.one_of(st.none(), _junk), max_size=30), st.sampled_from(["csv", "jsonl"]))
@settings(max_examples=200, deadline=None)
def test_property_good_rows_survive_any_junk_between_them(
    lines: list[bytes | None], fmt: str
) -> None:
    """`None` marks a good row; anything else is junk. Every good row comes out as a Row with
    its own line number, whatever junk surrounds it, unless junk opened a CSV quote."""
    expected: dict[int, tuple[str, str]] = {}
    out = [b"case_id,event_id"] if fmt == "csv" else []
    for item in lines:
        if item is None:
            case, event = _id(), _id()
            expected[len(out) + 1] = (case, event)
            text = (f"{case},{event}" if fmt == "csv"
                    else json.dumps({"case_id": case, "event_id": event}))
            out.append(text.encode())
        else:
            out.append(item)
    rows = rows_of(b"\n".join(out) + b"\n", fmt, Limits(max_field_chars=64, max_line_bytes=256))
    numbers = [r.line for r in rows]
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))
    got = {r.line: (r.case_id, r.event_id) for r in rows if isinstance(r, Row)}
    if fmt == "jsonl" or not any(b'"' in item for item in lines if item):
        assert {k: v for k, v in got.items() if k in expected} == expected
    for row in rows:
        assert isinstance(row, BadRow | BlankRow) or row.line in expected or fmt == "csv"
    if fmt == "jsonl":  # every line is accounted for: a row, a bad row or a blank one
        assert numbers == list(range(1, max(len(out), 1) + 1))  # [] is one empty line


@given(st.binary(max_size=3000), st.sampled_from(["csv", "jsonl"]))
@settings(max_examples=300, deadline=None)
def test_property_any_bytes_are_rows_or_one_file_error(data: bytes, fmt: str) -> None:
    from cancelq.bulk.intake import FileError

    try:
        rows = rows_of(data, fmt, Limits(max_field_chars=64, max_line_bytes=256))
    except FileError as exc:  # only a CSV header can refuse the whole file
        assert fmt == "csv" and "\n" not in str(exc)
        return
    for row in rows:
        assert row.line >= 1
        if isinstance(row, BadRow):
            assert "\n" not in row.error


# -- the CLI: the summary always prints ------------------------------------------------------


def test_cli_dry_run_reports_each_bad_row_and_prints_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"case_id,event_id\n" + f"{_id()},{_id()}\n".encode()
                     + b"y" * 300_000 + b"\n\xff\xfe\n" + f"{_id()},{_id()}\n".encode())
    done = subprocess.run(
        [sys.executable, "-c", "from producers.cli import main; main()",
         "bulk", str(path), "--dry-run", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "cancelq: line 3: line longer than 65536 bytes",
        "cancelq: line 4: not UTF-8 text (byte 0xff at column 1)",
    ]
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["accepted"], summary["invalid"]) == (4, 2, 2)


def test_cli_prints_the_counts_so_far_when_redis_goes_away(
    fake_store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis lost half-way: the summary of what was read and sent still prints, then one
    line, exit 1 (never a traceback)."""
    from contextlib import contextmanager

    import redis
    from click.testing import CliRunner

    from cancelq.bulk import writer as writer_module
    from producers.cli import bulk as bulk_cli
    from producers.cli import main

    @contextmanager
    def store(dry_run: bool) -> Iterator[AuditStore]:
        yield fake_store

    real_start = writer_module.BulkWriter.start
    calls: list[int] = []

    def failing_start(self: Any, rows: Any, **kwargs: Any) -> Any:
        calls.append(len(rows))
        if len(calls) > 1:
            raise redis.ConnectionError("connection reset")
        return real_start(self, rows, **kwargs)

    monkeypatch.setattr(bulk_cli, "_store_unless", store)
    monkeypatch.setattr(writer_module.BulkWriter, "start", failing_start)
    path = tmp_path / "big.csv"
    path.write_text("case_id,event_id\n" + "".join(f"{_id()},{_id()}\n" for _ in range(2500)))
    result = CliRunner().invoke(main, ["bulk", str(path), "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert summary["accepted"] == 1000 and summary["rows"] >= 2000
    assert result.stderr.strip().splitlines() == [
        "cancelq: cannot reach Redis (ConnectionError): check REDIS_URL"]
