"""Bulk intake: reading, validation, de-duplication, the batch script, runs, the CLI.

Unit tests run on fakeredis; the integration tests at the end use a real `redis-server`
(constant memory) and a real worker (real-time work overtakes a bulk backlog).
"""

from __future__ import annotations

import ast
import base64
import io
import json
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from click.testing import CliRunner, Result

from cancelq.bulk.intake import (
    MAX_REPORTED_BAD_ROWS,
    BadRow,
    BlankRow,
    FileError,
    Row,
    format_for,
    intake,
    read_rows,
)
from cancelq.bulk.runs import export_csv, iter_run_jobs, list_runs, run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter, uuid4_str
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text
from cancelq.store.keys import FIELDS, Keys
from cancelq.store.messages import BatchTemplate, batch_job, build_batch_message, job_fragment
from cancelq.store.queues import BULK_QUEUE
from cancelq.store.records import Attempt
from producers.cli import main
from producers.enqueue import enqueue_cancellation, submit
from tests.store.test_messages import kombu_decode


def _id() -> str:
    return str(uuid.uuid4())


def csv_bytes(*lines: str) -> io.BytesIO:
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def parsed(text: str, fmt: str = "csv") -> list[Row | BadRow]:
    return list(read_rows(io.BytesIO(text.encode()), fmt))  # type: ignore[arg-type]


# -- reading and validation -----------------------------------------------------------------


def test_csv_rows_are_validated_with_their_line_numbers() -> None:
    case, event = _id(), _id()
    text = textwrap.dedent(f"""\
        \ufeff Case_ID , EVENT_ID ,reason,ignored
        {case.upper()},{event},"spring clean",x

        not-a-uuid,{_id()},,
        {_id()}
        {_id()},{_id()},"two
        lines"
        {_id()},{_id()},{"r" * 1001}
        {case},{event}
        """)
    rows = parsed(text)
    assert rows[0] == Row(2, case, event, "spring clean")  # canonical lower-case ids
    bad = [row for row in rows if isinstance(row, BadRow)]
    assert [(b.line, b.error.split(":")[0]) for b in bad] == [
        (4, "case_id"), (5, "expected 4 columns, got 1"), (6, "reason"), (8, "reason"),
    ]
    assert "not a valid UUID" in bad[0].error
    assert "single line" in bad[2].error and "longer than 1000" in bad[3].error
    assert rows[-1] == Row(9, case, event, None)  # a short row without the optional column


def test_jsonl_rows_report_what_is_wrong() -> None:
    case, event = _id(), _id()
    good = {"case_id": case, "event_id": event, "reason": "r", "extra": 1}
    text = "\n".join([
        json.dumps(good), "", "{not json", "[1, 2]", json.dumps({"case_id": _id()}),
        json.dumps({"case_id": 5, "event_id": _id()}),
    ]) + "\n"
    rows = parsed(text, "jsonl")
    assert rows[0] == Row(1, case, event, "r")
    assert [(r.line, r.error) for r in rows[1:] if isinstance(r, BadRow)] == [
        (3, "not JSON: Expecting property name enclosed in double quotes at column 2"),
        (4, "not a JSON object"),
        (5, "event_id: required"),
        (6, "case_id: must be a UUID string"),
    ]


@pytest.mark.parametrize("header", ["case_id,reason", "event,case", ""])
def test_a_file_without_the_needed_columns_is_refused_whole(header: str) -> None:
    with pytest.raises(FileError) as caught:
        parsed(header + "\n" if header else "")
    assert caught.value.field == "FILE"


def test_format_from_the_name_else_sniffed() -> None:
    assert format_for("a.CSV") == "csv"
    assert format_for("a.ndjson") == "jsonl"
    assert format_for("a.jsonl") == "jsonl"
    assert format_for(None, b'\xef\xbb\xbf {"case_id": 1}') == "jsonl"
    assert format_for(None, b"case_id,event_id") == "csv"


def test_fast_uuid4_is_a_real_version_4_uuid() -> None:
    for _ in range(500):
        text = uuid4_str()
        parsed_uuid = uuid.UUID(text)
        assert str(parsed_uuid) == text and parsed_uuid.version == 4
        assert parsed_uuid.variant == uuid.RFC_4122


# -- the batch script: records, and batch messages made in Lua ------------------------------


def queued(client: redis.Redis, queue: str = BULK_QUEUE) -> list[str]:
    """The messages of a queue in the order a worker takes them (kombu pops the right end)."""
    return [decode_text(m) for m in reversed(client.lrange(queue, 0, -1))]


def jobs_of(payload: str) -> list[dict[str, str]]:
    """A batch message's `jobs`, decoded the way kombu's Redis transport decodes it."""
    jobs: list[dict[str, str]] = kombu_decode(payload)[1]["jobs"]
    return jobs


REASONS = ["100% sure, %s %d %%", 'say "no" \\ back\\slash', "caf\u00e9 \u2603 \U0001f600 'x'",
           None]


@pytest.mark.parametrize(("run_id", "requested_by"), [
    ("r1", "me@host (cancelq)"), ("run 'q' \"dq\" \\ %1 caf\u00e9", None),
])
def test_the_script_writes_what_build_batch_message_writes(
    fake_store: AuditStore, run_id: str, requested_by: str | None
) -> None:
    rows = [BulkRow(i, _id(), _id(), reason) for i, reason in enumerate(REASONS)]
    results = BulkWriter(fake_store, run_id=run_id, requested_by=requested_by).send(rows)
    [payload] = queued(fake_store.redis)
    message = json.loads(payload)
    jobs = [batch_job(r.job_id, row.case_id, row.event_id, row.reason)
            for r, row in zip(results, rows, strict=True)]
    ref = build_batch_message(jobs, queue=BULK_QUEUE, run_id=run_id, requested_by=requested_by,
                              task_id=message["headers"]["id"])
    ref_message = json.loads(ref.payload)
    assert kombu_decode(payload) == kombu_decode(ref.payload)
    assert [j.get("reason") for j in jobs_of(payload)] == REASONS  # % " \\ unicode intact
    assert message["headers"] == ref_message["headers"]
    assert _strip(message["properties"], "delivery_tag") == _strip(
        ref_message["properties"], "delivery_tag")
    assert payload == ref.payload.replace(ref_message["properties"]["delivery_tag"],
                                          message["properties"]["delivery_tag"])
    assert ref.queue_key == BULK_QUEUE and fake_store.redis.keys(f"{BULK_QUEUE}*") == [BULK_QUEUE]
    assert ast.literal_eval(message["headers"]["kwargsrepr"]) == {"run_id": run_id, "jobs": 4}


def test_a_chunk_of_250_rows_is_three_batches_in_file_order(fake_store: AuditStore) -> None:
    rows = [BulkRow(i, _id(), _id(), f"row {i}") for i in range(250)]
    results = BulkWriter(fake_store, run_id="r", requested_by=None, batch_size=100).send(rows)
    messages = queued(fake_store.redis)
    batches = [jobs_of(m) for m in messages]
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [j["job_id"] for b in batches for j in b] == [r.job_id for r in results]
    assert [j["case_id"] for b in batches for j in b] == [row.case_id for row in rows]
    headers = [json.loads(m)["headers"] for m in messages]
    tags = [json.loads(m)["properties"]["delivery_tag"] for m in messages]
    assert len({h["id"] for h in headers} | set(tags)) == 6  # task ids, delivery tags: unique
    assert all(uuid.UUID(h["id"]).version == 4 for h in headers)
    assert [ast.literal_eval(h["kwargsrepr"])["jobs"] for h in headers] == [100, 100, 50]


def test_duplicates_are_in_no_batch_and_all_duplicates_send_nothing(
    fake_store: AuditStore,
) -> None:
    rows = [BulkRow(i, _id(), _id()) for i in range(5)]
    writer = BulkWriter(fake_store, run_id="r", requested_by=None, batch_size=2)
    first = writer.send(rows[:2])
    results = writer.send(rows)  # rows 0 and 1 are live jobs now
    assert [r.duplicate for r in results] == [True, True, False, False, False]
    batches = [jobs_of(m) for m in queued(fake_store.redis)]
    assert [[j["job_id"] for j in b] for b in batches] == [
        [first[0].job_id, first[1].job_id], [results[2].job_id, results[3].job_id],
        [results[4].job_id]]
    before = fake_store.redis.llen(BULK_QUEUE)
    again = writer.send(rows)
    assert all(r.duplicate for r in again)
    assert fake_store.redis.llen(BULK_QUEUE) == before == 3


@pytest.mark.parametrize("size", [0, 1001])
def test_the_batch_size_is_one_to_max_batch_jobs(fake_store: AuditStore, size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BulkWriter(fake_store, run_id="r", requested_by=None, batch_size=size)


def test_the_script_refuses_a_call_short_of_batch_ids_before_writing(
    fake_store: AuditStore,
) -> None:
    template = BatchTemplate(BULK_QUEUE, run_id="r", requested_by=None)
    row = (_id(), _id(), _id(), "", job_fragment(_id(), _id(), _id(), None))
    args = ["t", "r", "", "1.0", BULK_QUEUE, BULK_QUEUE, "1", str(len(template.parts)),
            *template.parts, "1", _id(), _id(), "\n".join(row), "\n".join(row)]
    with pytest.raises(redis.ResponseError, match="batch ids"):
        fake_store.scripts("enqueue_many", args)
    assert fake_store.redis.dbsize() == 0


def _strip(value: dict[Any, Any], *names: str) -> dict[Any, Any]:
    return {k: v for k, v in value.items() if k not in names}


def test_enqueue_many_writes_what_enqueue_lua_writes(fake_redis: fakeredis.FakeRedis) -> None:
    one, many = AuditStore(fake_redis, Keys("one")), AuditStore(fake_redis, Keys("many"))
    rows = [BulkRow(i, _id(), _id(), "why" if i % 2 else None) for i in range(1, 6)]
    for row in rows:
        request = CancelRequest.parse(case_id=row.case_id, event_id=row.event_id,
                                      run_id="run-1", requested_by="me", reason=row.reason)
        submit(request, store=one, queue=BULK_QUEUE)
    fake_redis.rename(BULK_QUEUE, "one-queue")
    results = BulkWriter(many, run_id="run-1", requested_by="me").send(rows)
    assert all(not r.duplicate and r.state is State.QUEUED for r in results)

    for row, result in zip(rows, results, strict=True):
        first = one.job_for_pair(row.case_id, row.event_id)
        assert first is not None
        job_one = fake_redis.hgetall(one.keys.job(first))
        job_many = fake_redis.hgetall(many.keys.job(result.job_id))
        times = (FIELDS["created_at"], FIELDS["updated_at"])
        assert _strip(job_one, *times) == _strip(job_many, *times)
        assert many.lookup_ids(case_id=row.case_id) == [result.job_id]
        assert many.lookup_ids(event_id=row.event_id) == [result.job_id]
    assert one.counters() == many.counters() and one.counters("run-1") == many.counters("run-1")
    for index in ("idx:all", "idx:state:queued", "idx:run:run-1"):
        assert fake_redis.zcard(f"one:{index}") == fake_redis.zcard(f"many:{index}") == 5
    assert fake_redis.zrange("many:runs", 0, -1) == ["run-1"]
    # the same requests, in the same order (first row popped first), but in one batch message
    popped_one = [json.loads(m) for m in queued(fake_redis, "one-queue")]
    [batch] = queued(fake_redis)
    _args, batch_kwargs, _embed = kombu_decode(batch)
    assert _strip(batch_kwargs, "jobs") == {"run_id": "run-1", "requested_by": "me"}
    assert len(batch_kwargs["jobs"]) == len(popped_one)
    for a, job in zip(popped_one, batch_kwargs["jobs"], strict=True):
        body_a = json.loads(base64.b64decode(a["body"]))[1]
        assert _strip(body_a, "job_id") == {**_strip(job, "job_id"), **_strip(batch_kwargs, "jobs")}
        assert a["properties"]["delivery_info"] == json.loads(batch)["properties"]["delivery_info"]


def test_enqueue_many_keeps_file_order_in_the_run_index(fake_store: AuditStore) -> None:
    rows = [BulkRow(i, _id(), _id()) for i in range(300)]
    # a real clock's value: now + i * 1e-6 in floating point gave two rows one score here
    writer = BulkWriter(fake_store, run_id="r", requested_by=None)
    results = writer.send(rows, now=1795521090.2713985)
    assert [j.record.job_id for j in iter_run_jobs(fake_store, "r", page=7)] == [
        r.job_id for r in results
    ]


def test_a_chunk_reports_its_duplicates_in_their_rows(fake_store: AuditStore) -> None:
    live = enqueue_cancellation(_id(), _id(), store=fake_store)
    record = fake_store.get(live.job_id)
    assert record is not None
    rows = [BulkRow(1, _id(), _id()), BulkRow(2, record.case_id, record.event_id),
            BulkRow(3, _id(), _id())]
    rows.append(BulkRow(4, rows[0].case_id, rows[0].event_id))  # repeats row 1 of this chunk
    results = BulkWriter(fake_store, run_id="r", requested_by=None).send(rows)
    assert [r.duplicate for r in results] == [False, True, False, True]
    assert results[1].job_id == live.job_id and results[3].job_id == results[0].job_id
    assert fake_store.counters("r")["jobs"] == 2
    [message] = queued(fake_store.redis)  # one batch, of the two rows created
    assert [j["job_id"] for j in jobs_of(message)] == [results[0].job_id, results[2].job_id]


def test_an_empty_chunk_sends_nothing(fake_store: AuditStore) -> None:
    assert BulkWriter(fake_store, run_id="r", requested_by=None).send([]) == []
    assert fake_store.redis.dbsize() == 0


def test_a_chunk_is_written_after_redis_forgot_the_scripts(fake_store: AuditStore) -> None:
    """A Redis restart empties its script cache: the chunk is sent again as EVAL."""
    writer = BulkWriter(fake_store, run_id="r", requested_by=None)
    writer.send([BulkRow(1, _id(), _id())])
    fake_store.redis.script_flush()
    results = writer.send([BulkRow(2, _id(), _id())])
    assert not results[0].duplicate
    assert fake_store.counters("r")["jobs"] == 2


# -- intake: counts, duplicates, chunks ------------------------------------------------------


def test_intake_counts_accepted_duplicates_and_invalid(fake_store: AuditStore) -> None:
    pairs = [(_id(), _id()) for _ in range(7)]
    already = enqueue_cancellation(*pairs[0], store=fake_store)  # a live real-time job
    lines = ["case_id,event_id"] + [f"{c},{e}" for c, e in pairs]
    lines += [f"{pairs[3][0].upper()},{pairs[3][1]}", "bad,row", f"{pairs[5][0]},{pairs[5][1]}"]
    hooks: list[int] = []
    summary = intake(read_rows(csv_bytes(*lines), "csv"), run_id="r1", store=fake_store,
                     requested_by="me", chunk_rows=3, on_chunk=lambda s: hooks.append(s.rows))
    assert (summary.rows, summary.accepted, summary.duplicates, summary.invalid) == (10, 6, 3, 1)
    assert summary.bad_rows == [BadRow(10, "case_id: not a valid UUID: 'bad'")]
    assert hooks == [3, 6, 9, 10]
    assert fake_store.counters("r1")["jobs"] == 6
    # a batch per chunk that created a job (never one across chunks), no duplicate in any
    batches = [jobs_of(m) for m in queued(fake_store.redis)]
    assert [len(b) for b in batches] == [2, 3, 1]
    assert [(j["case_id"], j["event_id"]) for b in batches for j in b] == pairs[1:]
    assert fake_store.job_for_pair(*pairs[0]) == already.job_id
    # the same file again: everything is a duplicate now, nothing new is sent
    again = intake(read_rows(csv_bytes(*lines), "csv"), run_id="r1", store=fake_store)
    assert (again.accepted, again.duplicates, again.invalid) == (0, 9, 1)
    assert fake_store.redis.llen(BULK_QUEUE) == 3


def test_a_dry_run_validates_and_counts_and_touches_nothing(fake_store: AuditStore) -> None:
    lines = ["case_id,event_id", f"{_id()},{_id()}", "x,y"]
    summary = intake(read_rows(csv_bytes(*lines), "csv"), run_id="r", store=None, dry_run=True)
    data = summary.to_json()
    assert (data["rows"], data["accepted"], data["duplicates"], data["invalid"]) == (2, 1, None, 1)
    assert data["dry_run"] is True
    assert fake_store.redis.dbsize() == 0


def test_the_summary_keeps_only_the_first_bad_rows(fake_store: AuditStore) -> None:
    lines = ["case_id,event_id"] + ["nope,nope"] * (MAX_REPORTED_BAD_ROWS + 5)
    summary = intake(read_rows(csv_bytes(*lines), "csv"), run_id="r", store=fake_store)
    data = summary.to_json()
    assert data["invalid"] == MAX_REPORTED_BAD_ROWS + 5
    assert len(data["invalid_rows"]) == MAX_REPORTED_BAD_ROWS
    assert data["invalid_rows_truncated"] is True
    assert data["invalid_rows"][0] == {"line": 2, "error": "case_id: not a valid UUID: 'nope'"}


def test_a_bad_run_id_is_refused_before_anything_is_read(fake_store: AuditStore) -> None:
    with pytest.raises(ValueError, match="run_id"):
        intake(iter(()), run_id="a\nb", store=fake_store)
    with pytest.raises(ValueError, match="run_id"):
        intake(iter(()), run_id="  ", store=fake_store)


# -- runs -------------------------------------------------------------------------------------


def _settle(store: AuditStore, job_id: str, outcome: str) -> None:
    record = store.get(job_id)
    assert record is not None
    request = CancelRequest.parse(case_id=record.case_id, event_id=record.event_id)
    begun = store.begin(job_id, request, max_attempts=3, queue=BULK_QUEUE, queue_key=BULK_QUEUE,
                        owner="w1", lease_seconds=30)
    attempt = Attempt(begun.attempt, time.time(), 12.0, 200, None, None, outcome)
    store.finish(job_id, attempt=attempt, decision="settle", outcome=outcome, owner="w1")


def test_run_progress_comes_from_counters_and_exports_every_job(fake_store: AuditStore) -> None:
    rows = [BulkRow(i, _id(), _id(), "old") for i in range(4)]
    results = BulkWriter(fake_store, run_id="r9", requested_by="me").send(rows)
    _settle(fake_store, results[0].job_id, "cancelled")
    _settle(fake_store, results[1].job_id, "event_not_found")
    progress = run_progress(fake_store, "r9")
    data = progress.to_json()
    assert (data["jobs"], data["done"], data["pending"], data["finished"]) == (4, 2, 2, False)
    assert data["outcomes"] == {"cancelled": 1, "event_not_found": 1}
    assert data["percent"] == 50.0
    assert not run_progress(fake_store, "nope").exists
    assert [r.run_id for r in list_runs(fake_store)] == ["r9"]

    out = io.StringIO()
    assert export_csv(fake_store, "r9", out) == 4
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("job_id,case_id,event_id,state,outcome,attempts,last_http_status")
    first = lines[1].split(",")
    assert first[:2] == [results[0].job_id, rows[0].case_id]
    assert first[3:7] == ["settled", "cancelled", "1", "200"]
    assert lines[3].split(",")[3:5] == ["queued", ""]


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli_store(monkeypatch: pytest.MonkeyPatch, fake_redis: fakeredis.FakeRedis) -> AuditStore:
    store = AuditStore(fake_redis, Keys("c360"))
    monkeypatch.setattr("producers.cli.common.audit_store", lambda settings: store)
    return store


def run_cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def test_cli_bulk_json_summary_and_bad_rows_on_stderr(
    cli_store: AuditStore, tmp_path: Path
) -> None:
    path = tmp_path / "cleanup.jsonl"
    case, event = _id(), _id()
    path.write_text("\n".join([
        json.dumps({"case_id": case, "event_id": event}),
        json.dumps({"case_id": case, "event_id": event}),
        "oops",
    ]) + "\n")
    result = run_cli("bulk", str(path), "--run-id", "r-cli", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "r-cli"
    assert (summary["rows"], summary["accepted"], summary["duplicates"],
            summary["invalid"]) == (3, 1, 1, 1)
    assert "cancelq: line 3: not JSON" in result.stderr

    shown = run_cli("run", "r-cli", "--json")
    assert json.loads(shown.stdout)["jobs"] == 1
    listed = run_cli("runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["r-cli"]
    exported = tmp_path / "out.csv"
    assert run_cli("run", "r-cli", "--csv", str(exported)).exit_code == 0
    assert len(exported.read_text().splitlines()) == 2
    waited = run_cli("run", "r-cli", "--wait", "0.1")
    assert waited.exit_code == 3  # still queued: --wait ran out of time
    assert run_cli("run", "nope").exit_code == 1


def test_cli_bulk_sends_batches_of_bulk_batch_size(
    cli_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULK_BATCH_SIZE", "3")
    rows = "".join(f"{_id()},{_id()}\n" for _ in range(7))
    result = run_cli("bulk", "-", stdin="case_id,event_id\n" + rows)
    assert result.exit_code == 0, result.output
    assert [len(jobs_of(m)) for m in queued(cli_store.redis)] == [3, 3, 1]


def test_cli_bulk_reads_stdin_and_a_human_summary(cli_store: AuditStore) -> None:
    result = run_cli("bulk", "-", stdin=f"case_id,event_id\n{_id()},{_id()}\n")
    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout and "cancelq run bulk-" in result.stdout
    assert cli_store.redis.llen(BULK_QUEUE) == 1


def test_cli_bulk_dry_run_needs_no_redis(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(f"case_id,event_id\n{_id()},{_id()}\n")
    result = CliRunner().invoke(main, ["bulk", str(path), "--dry-run", "--json"],
                                env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 1


@pytest.mark.parametrize(("content", "message"), [
    (None, "FILE: cannot read"),
    ("a,b\n1,2\n", "FILE: CSV header must name case_id and event_id"),
])
def test_cli_bulk_refuses_an_unusable_file_with_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    result = run_cli("bulk", str(path), "--dry-run")
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


# -- integration: constant memory, real-time first ------------------------------------------

MEMORY_SCRIPT = """
import resource, sys, redis
from cancelq.bulk.intake import intake, read_rows
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text
store = AuditStore(redis.Redis.from_url(sys.argv[1], decode_responses=True))
with open(sys.argv[2], "rb") as f:
    s = intake(read_rows(f, "csv"), run_id=sys.argv[3], store=store)
print(s.rows, s.accepted, s.duplicates, s.invalid,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _write_rows(path: Path, n: int) -> None:
    with path.open("w") as out:
        out.write("case_id,event_id,reason\n")
        for i in range(n):
            if i % 10 == 9:  # many bad rows: an invalid row must not leak either
                out.write("broken,row,x\n")
            else:
                out.write(f"{uuid.uuid4()},{uuid.uuid4()},bulk cleanup\n")



# -- every data line in one count (issue 16, item 11) ---------------------------------------


def _sums_up(summary: dict[str, Any]) -> bool:
    counted = summary["accepted"] + (summary["duplicates"] or 0) + summary["invalid"]
    return bool(summary["rows"] == counted + summary["blank"])


@pytest.mark.parametrize(("fmt", "lines"), [
    ("csv", ["case_id,event_id,reason", "{a}", ",,", "", "  ,  ", "{a}", "bad,{b}"]),
    ("jsonl", ['{{"case_id": "{c}", "event_id": "{e}"}}', "", "   ",
               '{{"case_id": "{c}", "event_id": "{e}"}}', "[1]"]),
])
def test_blank_data_lines_are_counted_not_dropped(
    fake_store: AuditStore, fmt: str, lines: list[str]
) -> None:
    case, event = _id(), _id()
    text = [line.format(a=f"{case},{event},why", b=_id(), c=case, e=event) for line in lines]
    summary = intake(read_rows(csv_bytes(*text), fmt), run_id="r", store=fake_store)  # type: ignore[arg-type]
    data = summary.to_json()
    data_lines = len(text) - (fmt == "csv")  # the header is not a data line
    assert (data["rows"], data["accepted"], data["duplicates"], data["invalid"],
            data["blank"]) == (data_lines, 1, 1, 1, data_lines - 3)
    assert _sums_up(data)
    dry = intake(read_rows(csv_bytes(*text), fmt), run_id="r", store=None,  # type: ignore[arg-type]
                 dry_run=True).to_json()
    assert (dry["rows"], dry["accepted"], dry["invalid"], dry["blank"]) == (
        data_lines, 2, 1, data_lines - 3)


def test_blank_lines_before_the_csv_header_are_not_data() -> None:
    case, event = _id(), _id()
    rows = list(read_rows(csv_bytes("", ",", "case_id,event_id", f"{case},{event}", ",,"),
                          "csv"))
    assert rows == [Row(4, case, event, None), BlankRow(5)]


def test_cli_bulk_summary_counts_blank_lines(cli_store: AuditStore) -> None:
    case, event = _id(), _id()
    stdin = f"case_id,event_id\n{case},{event}\n,,\n{_id()},{_id()}\n"
    shown = run_cli("bulk", "-", "--json", stdin=stdin)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["rows"], data["accepted"], data["blank"]) == (3, 2, 1) and _sums_up(data)
    table = run_cli("bulk", "-", "--dry-run", stdin=stdin)
    assert table.exit_code == 0, table.output
    assert [line.split() for line in table.stdout.splitlines() if "blank" in line] == [
        ["│", "blank", "│", "1", "│"]]
