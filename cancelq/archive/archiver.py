"""The archiver: settled and dead jobs go from Redis to the archive, and only then off
Redis's pending set.

Why a sorted set and not a stream: the script that settles a job adds it to
`archive_pending` in the same step (nothing settles unlisted), a job is listed once however
often it is archived, the oldest entry's score is the archive's lag, and retention can ask
in one `ZSCORE` whether a job is archived yet. A stream would need a consumer group,
acknowledgements and trimming to say the same.

One pass: read the oldest entries, read their records, write them to the archive in one
transaction, commit, and only then remove exactly the entries read (`AuditStore.archived`:
an entry whose score changed meanwhile stays). Killed anywhere in between, the next pass
archives the same jobs again, which changes nothing (`Archive.write` is idempotent). Two
archivers at once write the same rows twice, harmlessly. A database that is down stops the
pass before anything is removed: Redis keeps every record (retention skips pending jobs)
and the next pass catches up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore

if TYPE_CHECKING:
    from cancelq.archive.archive import Archive

log = logging.getLogger("cancelq.archive")

BATCH = 1_000
ENDED = frozenset({State.SETTLED, State.DEAD})


@dataclass
class Archiver:
    """Moves settled jobs to the archive, a batch per `archive_once`."""

    store: AuditStore
    archive: Archive
    batch: int = BATCH
    archived: int = 0

    def archive_once(self) -> int:
        """One batch: returns how many pending entries it took off (archived or gone)."""
        entries = self.store.archive_pending(self.batch)
        if not entries:
            return 0
        records = self.store.get_many([job_id for job_id, _ in entries])
        ended = [record for record in records if record.state in ENDED]
        self.archive.write(ended)  # committed, or raises and nothing below happens
        done = self.store.archived(entries)
        self.archived += len(ended)
        return done

    def drain(self) -> int:
        """Batches until the pending set is empty (or only holds entries that changed while
        read); returns how many entries were taken off."""
        total = 0
        while True:
            done = self.archive_once()
            total += done
            if done < self.batch:
                return total
