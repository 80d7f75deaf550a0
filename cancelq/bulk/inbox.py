"""Scheduled cleanup: each file dropped in `CLEANUP_INBOX` becomes one bulk run, once.

    CLEANUP_INBOX/              drop *.csv, *.jsonl or *.ndjson here (write it elsewhere or
                                under a dot-name, then rename: a file is taken whole)
    CLEANUP_INBOX/processing/   claimed by a worker, being enqueued
    CLEANUP_INBOX/processed/    done: the file, and `<name>.summary.json` beside it
    CLEANUP_INBOX/failed/       refused: the file, and `<name>.summary.json` saying why

Celery beat sends `cleanup.process_inbox` on `CLEANUP_SCHEDULE` (`worker.beat`); only one
beat sends it however many run (celery-redbeat's lock in Redis). Each file is still taken
under a Redis lock of its own (`c360:cleanup:lock:{name}`, renewed after every chunk), then
moved to `processing/` by one rename, so two workers running the task at once cannot take
the same file. A worker that dies mid-file leaves it in `processing/` with its lock
expiring; the next run takes it again under the same run id (`cleanup-{name}-{sha256}`),
and the rows already enqueued come back as duplicates of their live jobs: nothing is called
twice (the summary says `resumed`). Dropping the same content again makes the same run id,
so it is counted as duplicates too.

What the inbox trusts: only regular files. A symbolic link (to the key file, say) or a
FIFO, socket or device is moved to `failed/` without being opened, so nothing of what it
points at can reach a summary, a log line or Flower; files are opened with `O_NOFOLLOW`,
so one swapped for a link after the check is refused too. One file that cannot be read or
run is moved to `failed/` with the reason, and the others go on: no file can block the
inbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import redis

from cancelq.bulk.intake import (
    SUFFIXES,
    BulkSummary,
    FileError,
    Limits,
    format_for,
    intake,
    read_rows,
)
from cancelq.bulk.runs import run_progress
from cancelq.core.clock import iso_utc
from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.cleanup")

SETTLE_SECONDS = 1.0
"""A file changed more recently than this may still be being written: left for next time."""
LOCK_SECONDS = 60.0
"""TTL of a file's lock; renewed after every chunk, so only a dead worker lets it expire."""
PROCESSING, PROCESSED, FAILED = "processing", "processed", "failed"

Status = Literal["processed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    status: Status
    run_id: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"file": self.name, "status": self.status, "run_id": self.run_id,
                "detail": self.detail}


def requester() -> str:
    return f"cleanup@{socket.gethostname()} (scheduled)"


class NotRegular(OSError):
    """An inbox entry that is not a regular file (a link, a FIFO...): refused unread."""


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what it is (for the refusal's reason)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file (a FIFO, socket or device)"


def open_regular(path: Path) -> IO[bytes]:
    """Open `path` for reading only if it is a regular file, never through a link.

    O_NOFOLLOW refuses a link even if one was swapped in after the directory scan;
    O_NONBLOCK keeps a FIFO from blocking the open; fstat checks what was really opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegular("a symbolic link") from None
        raise exc
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotRegular(kind)
    return os.fdopen(fd, "rb")


def run_id_for(path: Path) -> tuple[str, str]:
    """(run id, sha256) from the file's name and content: the same file, the same run."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:80] or "file"
    hexdigest = digest.hexdigest()
    return f"cleanup-{stem}-{hexdigest[:12]}", hexdigest


class Inbox:
    """The inbox directory and its three sub-directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processing = root / PROCESSING
        self.processed = root / PROCESSED
        self.failed = root / FAILED

    def prepare(self) -> None:
        for directory in (self.processing, self.processed, self.failed):
            directory.mkdir(parents=True, exist_ok=True)

    def candidates(self, *, settle_seconds: float, now: float) -> list[Path]:
        """Leftovers of a dead worker first (in `processing/`), then new entries, oldest
        first. Links and special files are candidates too (to be refused); directories,
        dot-names and files still settling are not. Nothing is followed or opened here."""
        found: list[Path] = []
        for directory in (self.processing, self.root):
            entries = []
            for path in directory.iterdir():
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue
                if path.name.startswith(".") or stat.S_ISDIR(info.st_mode):
                    continue
                if directory is self.root and now - info.st_mtime < settle_seconds:
                    continue
                entries.append((info.st_mtime, path))
            found.extend(path for _, path in sorted(entries))
        return found


def process_inbox(
    store: AuditStore,
    root: Path,
    *,
    requested_by: str | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    lock_seconds: float = LOCK_SECONDS,
    limits: Limits | None = None,
) -> list[FileResult]:
    """Take every ready file of the inbox that nobody else holds, and run it."""
    inbox = Inbox(root)
    inbox.prepare()
    results = []
    for path in inbox.candidates(settle_seconds=settle_seconds, now=time.time()):
        try:
            result = process_file(
                store, inbox, path, requested_by=requested_by or requester(),
                lock_seconds=lock_seconds, limits=limits,
            )
        except (redis.RedisError, OSError) as exc:  # the next file may still go
            log.warning("cleanup: %s left for the next run: %s: %s",
                        path.name, type(exc).__name__, exc)
            continue
        if result.status != "skipped":
            results.append(result)
    return results


def process_file(
    store: AuditStore,
    inbox: Inbox,
    path: Path,
    *,
    requested_by: str,
    lock_seconds: float = LOCK_SECONDS,
    limits: Limits | None = None,
) -> FileResult:
    """Take one inbox entry under its lock and run it (or refuse it, unread)."""
    name = path.name
    lock = store.lock(store.keys.cleanup_lock(name), lock_seconds)
    if not lock.acquire():
        return FileResult(name, "skipped", detail="another worker holds it")
    try:
        if not os.path.lexists(path):  # listed, then finished by another worker before we locked
            return FileResult(name, "skipped", detail="already taken")
        claimed = inbox.processing / name
        if path.parent != inbox.processing:
            if os.path.lexists(claimed):  # an earlier file of that name is still to be finished
                return FileResult(name, "skipped", detail="same name still in processing/")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                return FileResult(name, "skipped", detail="already taken")
        return _run_guarded(store, inbox, claimed, requested_by, lock.reacquire,
                            limits or Limits())
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("cleanup: the lock on %s had expired before its end", name)


def _run_guarded(
    store: AuditStore,
    inbox: Inbox,
    path: Path,
    requested_by: str,
    renew: Callable[[], Any],
    limits: Limits,
) -> FileResult:
    """`_run_file`, with a file that cannot be read moved to `failed/` instead of left in
    `processing/`, where it would be taken first again on every run, forever."""
    started = time.time()
    try:
        kind = kind_of(path.lstat().st_mode)
        if kind is not None:
            return _fail(inbox, path, started, None, None, f"refused unread: {kind}")
        return _run_file(store, inbox, path, requested_by, renew=renew, limits=limits)
    except NotRegular as exc:
        return _fail(inbox, path, started, None, None, f"refused unread: {exc}")
    except (OSError, UnicodeError, ValueError) as exc:
        return _fail(inbox, path, started, None, None,
                     f"cannot read it: {type(exc).__name__}: {str(exc)[:200]}")


def _run_file(
    store: AuditStore,
    inbox: Inbox,
    path: Path,
    requested_by: str,
    *,
    renew: Callable[[], Any],
    limits: Limits,
) -> FileResult:
    name = path.name
    started = time.time()
    if not any(name.lower().endswith(suffix) for suffix in SUFFIXES):
        return _fail(inbox, path, started, None, None,
                     f"not a bulk file: the name must end in {', '.join(SUFFIXES)}")
    run_id, sha256 = run_id_for(path)
    resumed = run_progress(store, run_id).exists
    try:
        with open_regular(path) as stream:
            summary = intake(
                read_rows(stream, format_for(name), limits=limits),
                run_id=run_id,
                store=store,
                requested_by=requested_by,
                batch_size=limits.batch_size,
                on_chunk=lambda _summary: renew(),
            )
    except FileError as exc:
        return _fail(inbox, path, started, run_id, sha256, exc.problem)
    blank = f" ({summary.blank} blank)" if summary.blank else ""
    if summary.rows == summary.blank:
        return _fail(inbox, path, started, run_id, sha256, f"no rows{blank}", summary)
    if summary.accepted + (summary.duplicates or 0) == 0:
        return _fail(inbox, path, started, run_id, sha256,
                     f"no valid row: all {summary.invalid} rows are invalid{blank}", summary)
    report = _report("processed", name, started, run_id, sha256, summary)
    report["resumed"] = resumed
    report["run_jobs"] = run_progress(store, run_id).jobs
    destination = _move_with_summary(path, inbox.processed, report)
    log.info(
        "cleanup: %s -> run %s: %d rows, %d accepted, %s duplicates, %d invalid, %d blank%s",
        name, run_id, summary.rows, summary.accepted, summary.duplicates, summary.invalid,
        summary.blank,
        " (resumed)" if resumed else "",
    )
    return FileResult(name, "processed", run_id, str(destination))


def _fail(
    inbox: Inbox,
    path: Path,
    started: float,
    run_id: str | None,
    sha256: str | None,
    reason: str,
    summary: BulkSummary | None = None,
) -> FileResult:
    report = _report("failed", path.name, started, run_id, sha256, summary)
    report["reason"] = reason
    destination = _move_with_summary(path, inbox.failed, report)
    log.warning("cleanup: %s failed: %s", path.name, reason)
    return FileResult(path.name, "failed", run_id, f"{destination}: {reason}")


def _report(
    status: str,
    name: str,
    started: float,
    run_id: str | None,
    sha256: str | None,
    summary: BulkSummary | None,
) -> dict[str, Any]:
    report: dict[str, Any] = {"file": name, "status": status, "run_id": run_id,
                              "sha256": sha256}
    if summary is not None:
        report.update(summary.to_json())
    report.update(
        started_at=iso_utc(started, millis=False),
        finished_at=iso_utc(time.time(), millis=False),
        host=socket.gethostname(),
    )
    return report


def _move_with_summary(path: Path, directory: Path, report: dict[str, Any]) -> Path:
    """The summary first, then the file: a crash in between only means doing it again."""
    destination = directory / path.name
    # A summary without its file is this file's own, from a worker that died between the
    # two steps: replace it. A file already there is another drop of the same name: keep it.
    if destination.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        destination = directory / f"{stamp}-{path.name}"
    summary_path = _summary_path(destination)
    temporary = summary_path.with_name(f".{summary_path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, summary_path)
    os.replace(path, destination)
    return destination


def _summary_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".summary.json")
