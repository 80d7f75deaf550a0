"""Scheduled cleanup: the schedule, the inbox on fakeredis, and two real beats at once."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab, schedule

from cancelq.bulk.inbox import Inbox, process_file, process_inbox, run_id_for
from cancelq.bulk.intake import Limits
from cancelq.bulk.runs import run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.errors import ConfigError
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from tests.bulk.test_intake import jobs_of, queued
from worker.beat import CLEANUP_TASK, beat_schedule, parse_schedule


def _id() -> str:
    return str(uuid.uuid4())


def drop(inbox: Path, name: str, text: str, *, age: float = 5.0) -> Path:
    """Write beside, then rename in: how a file should arrive. Backdated past the settle time."""
    inbox.mkdir(parents=True, exist_ok=True)
    temporary = inbox / f".{name}.part"
    temporary.write_text(text)
    past = time.time() - age
    os.utime(temporary, (past, past))
    path = inbox / name
    os.rename(temporary, path)
    return path


def csv_text(pairs: list[tuple[str, str]], *extra: str) -> str:
    return "\n".join(["case_id,event_id", *(f"{c},{e}" for c, e in pairs), *extra]) + "\n"


def summary_of(directory: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((directory / f"{name}.summary.json").read_text())
    return data


# -- the schedule -----------------------------------------------------------------------------


def test_cron_nicknames_and_intervals() -> None:
    assert parse_schedule("*/15 2 * * 1-5") == crontab("*/15", "2", day_of_week="1-5")
    assert parse_schedule(" @daily ") == crontab("0", "0")
    assert parse_schedule("@every 3s") == schedule(timedelta(seconds=3))
    assert parse_schedule("@every 2m") == schedule(timedelta(minutes=2))


@pytest.mark.parametrize("bad", ["* * *", "61 * * * *", "@every 0s", "@sometimes"])
def test_a_bad_schedule_is_one_line_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="^CLEANUP_SCHEDULE: "):
        parse_schedule(bad)


def test_the_beat_schedule_comes_from_settings(tmp_path: Path) -> None:
    assert beat_schedule(load_settings()) == {}
    entry = beat_schedule(load_settings(CLEANUP_SCHEDULE="0 3 * * *", CLEANUP_INBOX=tmp_path))
    assert entry["cleanup-inbox"]["task"] == CLEANUP_TASK
    assert entry["cleanup-inbox"]["schedule"] == crontab("0", "3")
    assert entry["cleanup-inbox"]["options"] == {"queue": REALTIME_QUEUE}
    with pytest.raises(ConfigError, match="CLEANUP_INBOX"):
        beat_schedule(load_settings(CLEANUP_SCHEDULE="@hourly"))


def test_the_run_id_is_the_name_and_the_content(tmp_path: Path) -> None:
    a = drop(tmp_path, "Nov cleanup (ops).csv", "case_id,event_id\n")
    run_id, digest = run_id_for(a)
    assert run_id == f"cleanup-Nov-cleanup-ops-{digest[:12]}"
    assert run_id_for(a) == (run_id, digest)
    a.write_text("case_id,event_id\n\n")
    assert run_id_for(a)[0] != run_id


# -- the inbox ------------------------------------------------------------------------------


def test_a_file_becomes_one_run_and_moves_to_processed(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    pairs = [(_id(), _id()) for _ in range(5)]
    drop(tmp_path, "nov.csv", csv_text(pairs, "bad,row", f"{pairs[0][0]},{pairs[0][1]}"))
    results = process_inbox(fake_store, tmp_path)
    assert [(r.name, r.status) for r in results] == [("nov.csv", "processed")]
    inbox = Inbox(tmp_path)
    assert not (tmp_path / "nov.csv").exists() and not any(inbox.processing.iterdir())
    assert (inbox.processed / "nov.csv").exists()
    report = summary_of(inbox.processed, "nov.csv")
    assert (report["rows"], report["accepted"], report["duplicates"], report["invalid"]) == (
        7, 5, 1, 1)
    assert report["status"] == "processed" and report["resumed"] is False
    assert report["run_id"] == results[0].run_id and report["run_jobs"] == 5
    assert report["invalid_rows"] == [{"line": 7, "error": "case_id: not a valid UUID: 'bad'"}]
    assert [len(jobs) for jobs in batches(fake_store)] == [5]  # one batch message
    # nothing left to do: the next run finds nothing
    assert process_inbox(fake_store, tmp_path) == []


def batches(store: AuditStore) -> list[list[dict[str, str]]]:
    """The `jobs` of each bulk message, in the order a worker takes them."""
    return [jobs_of(message) for message in queued(store.redis)]


def test_the_inbox_sends_batches_of_the_configured_size(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    drop(tmp_path, "five.csv", csv_text([(_id(), _id()) for _ in range(5)]))
    [result] = process_inbox(fake_store, tmp_path, limits=Limits(batch_size=2))
    assert result.status == "processed"
    assert [len(jobs) for jobs in batches(fake_store)] == [2, 2, 1]


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("a.csv", "id,event\n1,2\n", "CSV header must name case_id and event_id"),
    ("b.txt", "case_id,event_id\n", "not a bulk file"),
    ("c.csv", "case_id,event_id\n", "no rows"),
    ("d.jsonl", '{"case_id": "x", "event_id": "y"}\n', "no valid row"),
])
def test_a_file_that_cannot_run_moves_to_failed_with_the_reason(
    fake_store: AuditStore, tmp_path: Path, name: str, text: str, reason: str
) -> None:
    drop(tmp_path, name, text)
    [result] = process_inbox(fake_store, tmp_path)
    assert result.status == "failed"
    failed = Inbox(tmp_path).failed
    assert (failed / name).read_text() == text
    report = summary_of(failed, name)
    assert report["status"] == "failed" and reason in str(report["reason"])
    assert fake_store.redis.llen(BULK_QUEUE) == 0


def test_files_being_written_or_hidden_or_held_are_left_alone(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    drop(tmp_path, "fresh.csv", csv_text([(_id(), _id())]), age=0)
    drop(tmp_path, ".hidden.csv", csv_text([(_id(), _id())]))
    held = drop(tmp_path, "held.csv", csv_text([(_id(), _id())]))
    fake_store.redis.set(fake_store.keys.cleanup_lock("held.csv"), "someone", ex=60)
    assert process_inbox(fake_store, tmp_path, settle_seconds=2) == []
    assert held.exists() and (tmp_path / "fresh.csv").exists()
    assert [r.name for r in process_inbox(fake_store, tmp_path, settle_seconds=0)] == [
        "fresh.csv"]


def test_a_file_left_mid_way_by_a_dead_worker_resumes_without_duplicates(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    pairs = [(_id(), _id()) for _ in range(10)]
    inbox = Inbox(tmp_path)
    inbox.prepare()
    path = drop(inbox.processing, "big.csv", csv_text(pairs))  # claimed, then the worker died
    run_id, _ = run_id_for(path)
    rows = [BulkRow(i, c, e) for i, (c, e) in enumerate(pairs[:4])]
    BulkWriter(fake_store, run_id=run_id, requested_by="dead worker").send(rows)

    [result] = process_inbox(fake_store, tmp_path)
    assert result.status == "processed" and result.run_id == run_id
    report = summary_of(inbox.processed, "big.csv")
    assert (report["accepted"], report["duplicates"], report["resumed"]) == (6, 4, True)
    assert run_progress(fake_store, run_id).jobs == 10
    sent = [(j["case_id"], j["event_id"]) for jobs in batches(fake_store) for j in jobs]
    assert sorted(sent) == sorted(pairs)  # one job per pair in the messages, never two


def test_the_same_name_dropped_again_keeps_both_summaries(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    pairs = [(_id(), _id())]
    drop(tmp_path, "x.csv", csv_text(pairs))
    process_inbox(fake_store, tmp_path)
    drop(tmp_path, "x.csv", csv_text(pairs))
    [result] = process_inbox(fake_store, tmp_path)
    assert result.status == "processed"
    summaries = sorted(p.name for p in Inbox(tmp_path).processed.glob("*.summary.json"))
    assert len(summaries) == 2 and summaries[-1] == "x.csv.summary.json"
    second = json.loads((Inbox(tmp_path).processed / summaries[0]).read_text())
    assert (second["accepted"], second["duplicates"], second["resumed"]) == (0, 1, True)


def test_two_workers_at_once_take_each_file_once(fake_store: AuditStore, tmp_path: Path) -> None:
    sizes = {f"f{i}.csv": 30 + i for i in range(6)}
    for name, size in sizes.items():
        drop(tmp_path, name, csv_text([(_id(), _id()) for _ in range(size)]))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        barrier.wait()
        # batches larger than any file: one message per file, its jobs counted below
        outcomes.extend(r.name for r in process_inbox(fake_store, tmp_path,
                                                      limits=Limits(batch_size=100)))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == sorted(sizes)  # each file by exactly one of them
    processed = Inbox(tmp_path).processed
    assert sorted(p.name for p in processed.glob("*.summary.json")) == sorted(
        f"{n}.summary.json" for n in sizes)
    assert sorted(len(jobs) for jobs in batches(fake_store)) == sorted(sizes.values())


def test_a_lock_lost_to_another_worker_is_reported_not_hidden(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    path = drop(tmp_path, "y.csv", csv_text([(_id(), _id())]))
    inbox = Inbox(tmp_path)
    inbox.prepare()
    result = process_file(fake_store, inbox, path, requested_by="t", lock_seconds=30)
    assert result.status == "processed"
    assert fake_store.redis.get(fake_store.keys.cleanup_lock("y.csv")) is None  # released


def test_a_leftover_finished_by_another_worker_after_listing_is_skipped(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    """Listed in processing/ by one worker, finished and moved away by another before the
    first takes its lock: the first skips it (it used to record it `failed` a second time)."""
    inbox = Inbox(tmp_path)
    inbox.prepare()
    gone = inbox.processing / "done-elsewhere.csv"  # listed a moment ago, no longer there
    result = process_file(fake_store, inbox, gone, requested_by="t", lock_seconds=30)
    assert (result.status, result.detail) == ("skipped", "already taken")
    assert list(inbox.failed.iterdir()) == []


def test_the_inbox_summary_counts_blank_lines(fake_store: AuditStore, tmp_path: Path) -> None:
    pairs = [(_id(), _id()) for _ in range(2)]
    drop(tmp_path, "gaps.csv", csv_text(pairs, ",,", "", "bad,row"))
    [result] = process_inbox(fake_store, tmp_path)
    assert result.status == "processed"
    report = summary_of(Inbox(tmp_path).processed, "gaps.csv")
    assert (report["rows"], report["accepted"], report["duplicates"], report["invalid"],
            report["blank"]) == (5, 2, 0, 1, 2)


def test_a_file_of_blank_lines_only_fails_saying_so(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    drop(tmp_path, "empty.csv", "case_id,event_id\n,,\n\n")
    [result] = process_inbox(fake_store, tmp_path)
    assert result.status == "failed"
    report = summary_of(Inbox(tmp_path).failed, "empty.csv")
    assert report["blank"] == 2 and report["rows"] == 2
    assert report["reason"] == "no rows (2 blank)"
