"""Issue 11: the cleanup inbox trusts only regular files, and no file can block it.

A symlink (to the key file, say) or a FIFO is refused without being opened, so nothing of
what it points at reaches a summary, a log line or Flower; one file that cannot be read is
moved to failed/ and the others still run; the task runs CLEANUP_INBOX and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cancelq.bulk import inbox as inbox_module
from cancelq.bulk.inbox import Inbox, process_inbox
from cancelq.core.settings import load_settings
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE

SECRET_LINE = "sk-live-THE-KEY-FILE-FIRST-LINE"


def _id() -> str:
    return str(uuid.uuid4())


def settled(path: Path) -> Path:
    past = time.time() - 5
    os.utime(path, (past, past), follow_symlinks=False)
    return path


def good_file(inbox: Path, name: str) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_text(f"case_id,event_id\n{_id()},{_id()}\n")
    return settled(path)


def everything_written(inbox: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in inbox.rglob("*.summary.json"))


def test_a_symlink_to_the_key_file_is_refused_unread(
    fake_store: AuditStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret-key"
    secret.write_text(SECRET_LINE + "\n")
    inbox = tmp_path / "inbox"
    good_file(inbox, "a.csv")
    (inbox / "key.csv").symlink_to(secret)
    settled(inbox / "key.csv")
    with caplog.at_level(logging.INFO):
        results = process_inbox(fake_store, inbox)
    by_name = {r.name: r for r in results}
    assert by_name["a.csv"].status == "processed"
    assert by_name["key.csv"].status == "failed" and "symbolic link" in by_name["key.csv"].detail
    moved = Inbox(inbox).failed / "key.csv"
    assert moved.is_symlink()  # the link itself moved, its target untouched
    assert secret.read_text() == SECRET_LINE + "\n"
    reported = json.dumps([r.to_json() for r in results])
    for text in (everything_written(inbox), caplog.text, reported):
        assert SECRET_LINE not in text
    assert fake_store.redis.llen(BULK_QUEUE) == 1


def test_a_fifo_is_refused_without_blocking(fake_store: AuditStore, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    good_file(inbox, "a.csv")
    os.mkfifo(inbox / "pipe.csv")
    settled(inbox / "pipe.csv")
    results = {r.name: r for r in process_inbox(fake_store, inbox)}
    assert results["pipe.csv"].status == "failed"
    assert "not a regular file" in results["pipe.csv"].detail
    assert results["a.csv"].status == "processed"


def test_a_link_swapped_in_after_the_scan_is_still_refused(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET_LINE + "\n")
    with pytest.raises(OSError):
        link = tmp_path / "x.csv"
        link.symlink_to(secret)
        inbox_module.open_regular(link)


def test_one_file_that_cannot_be_read_never_blocks_the_others(
    fake_store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    good_file(inbox, "a.csv")
    good_file(inbox, "b.csv")
    real = inbox_module.run_id_for

    def flaky(path: Path) -> tuple[str, str]:
        if path.name == "a.csv":
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(inbox_module, "run_id_for", flaky)
    results = {r.name: r.status for r in process_inbox(fake_store, inbox)}
    assert results == {"a.csv": "failed", "b.csv": "processed"}
    failed = Inbox(inbox).failed
    assert "Input/output error" in (failed / "a.csv.summary.json").read_text()
    # the next run does not take the bad file again (it is not left in processing/)
    assert not any(Inbox(inbox).processing.iterdir())
    assert process_inbox(fake_store, inbox) == []


def test_a_binary_file_is_bad_rows_not_a_stuck_inbox(
    fake_store: AuditStore, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "noise.jsonl").write_bytes(os.urandom(200_000))
    settled(inbox / "noise.jsonl")
    good_file(inbox, "z.csv")
    results = {r.name: r.status for r in process_inbox(fake_store, inbox)}
    assert results == {"noise.jsonl": "failed", "z.csv": "processed"}


def _runtime(tmp_path: Path, store: AuditStore) -> Any:
    settings = load_settings(CLEANUP_INBOX=str(tmp_path / "inbox"))
    return SimpleNamespace(settings=settings, store=store)


def test_the_task_runs_only_cleanup_inbox(
    fake_store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    monkeypatch.setattr(tasks, "get_runtime", lambda: _runtime(tmp_path, fake_store))
    elsewhere = tmp_path / "elsewhere"
    good_file(elsewhere, "x.csv")
    assert tasks.process_inbox_task.run(str(elsewhere)) == []
    assert (elsewhere / "x.csv").exists() and not (elsewhere / "processing").exists()
    good_file(tmp_path / "inbox", "y.csv")
    [result] = tasks.process_inbox_task.run(str(tmp_path / "inbox"))  # the same dir: fine
    assert result["status"] == "processed"
    good_file(tmp_path / "inbox", "w.csv")
    [result] = tasks.process_inbox_task.run()
    assert result["file"] == "w.csv"
