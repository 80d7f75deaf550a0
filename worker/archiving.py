"""The worker's archiver thread: with `ARCHIVE_URL` set, every worker moves settled jobs to
the archive on its own, so no separate process is needed (`cancelq archive run --follow`
does the same from anywhere).

Its own thread, not a duty of the retry scheduler: a database that is down or slow must
pause archiving only, never the retries, the reaper or retention. An outage is one line,
then a pause; Redis keeps every job meanwhile (retention skips the ones not archived), and
the next pass catches up. Several workers archive at once harmlessly: writes are
idempotent, and an entry leaves the pending set only after the archive committed it.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from cancelq.archive import migrate
from cancelq.archive.archive import Archive, open_archive
from cancelq.archive.archiver import Archiver
from cancelq.core.errors import ArchiveUnavailable
from cancelq.core.settings import Settings
from cancelq.core.ticker import Ticker
from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.archive")

ARCHIVE_INTERVAL_SECONDS = 1.0
OUTAGE_PAUSE_SECONDS = 5.0


class ArchiverThread:
    """`Archiver.drain` every second on a daemon thread, until stopped."""

    def __init__(self, store: AuditStore, archive: Archive,
                 interval: float = ARCHIVE_INTERVAL_SECONDS) -> None:
        self.archiver = Archiver(store, archive)
        self._ticker = Ticker("archiver", self._tick, interval=interval,
                              outage=(ArchiveUnavailable, RedisError),
                              dependency="the archive or Redis", pause=OUTAGE_PAUSE_SECONDS)
        self._said: str | None = None

    def _tick(self) -> None:
        try:
            self.archiver.drain()
        except ArchiveUnavailable as exc:
            if str(exc) != self._said:  # the masked reason, once per kind of outage
                log.warning("archive: %s; archiving paused, Redis keeps every job", exc)
                self._said = str(exc)
            raise
        self._said = None

    def start(self) -> None:
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)
        self.archiver.archive.close()


def start_archiver(settings: Settings, store: AuditStore) -> ArchiverThread | None:
    """The archiver thread, started, when `ARCHIVE_URL` is set; None otherwise. With
    `ARCHIVE_MIGRATE=1` the schema is migrated first (a failure is one line, and the
    thread starts anyway: it says what is wrong until the database is fixed)."""
    archive = open_archive(settings)
    if archive is None:
        return None
    if settings.archive_migrate:
        try:
            before, now = migrate.upgrade(archive.engine)
            if before != now:
                log.warning("archive: schema %s -> %s (ARCHIVE_MIGRATE)", before or "none", now)
        except ArchiveUnavailable as exc:
            log.error("archive: cannot migrate: %s", exc)
    thread = ArchiverThread(store, archive)
    thread.start()
    return thread
