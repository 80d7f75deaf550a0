"""`cancelq doctor` checks the archive: reachable, migrated, and keeping up."""

from __future__ import annotations

import time

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.archive.database import make_engine
from cancelq.core.settings import load_settings
from cancelq.ops.doctor import check_archive
from cancelq.store.audit import AuditStore
from tests.archive.test_archiver import settle_jobs


def test_not_configured_is_a_skip() -> None:
    assert check_archive(load_settings(), None).status == "skip"


def test_down_or_not_migrated_fails_in_one_masked_line(pg_url: str) -> None:
    down = check_archive(load_settings(
        ARCHIVE_URL="postgresql+psycopg://u:s3cret@127.0.0.1:1/x"), None)
    assert down.status == "fail" and "connection refused" in down.summary
    assert "s3cret" not in str(down.to_json())
    old = check_archive(load_settings(ARCHIVE_URL=pg_url), None)
    assert old.status == "fail" and "run `cancelq archive migrate`" in old.summary
    migrate.upgrade(make_engine(pg_url))
    assert check_archive(load_settings(ARCHIVE_URL=pg_url), None).status == "ok"


def test_a_backlog_older_than_five_minutes_warns_and_clears_once_archived(
    real_store: AuditStore, pg_archive: Archive, pg_url: str
) -> None:
    settings = load_settings(ARCHIVE_URL=pg_url)
    settle_jobs(real_store, 2, now=time.time() - 900)
    behind = check_archive(settings, real_store)
    assert behind.status == "warn" and "2 job(s) waiting" in behind.summary
    assert behind.data["pending"] == 2 and behind.data["oldest_pending_age_seconds"] > 800
    Archiver(real_store, pg_archive).drain()
    caught_up = check_archive(settings, real_store)
    assert caught_up.status == "ok" and caught_up.data["pending"] == 0
