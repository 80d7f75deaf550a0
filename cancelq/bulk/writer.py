"""Writing a chunk of bulk rows: one Lua call per chunk, one message per batch of jobs.

Three costs dominated bulk (measured, docs/bulk.md): `build_task_message` per row (~40 us:
a nested `json.dumps`), one `enqueue.lua` call per row (~38 us of Redis time plus the
client's packing), and, on the worker, Celery's own cost per message (~1.4 ms of CPU). So
`AuditStore.start_enqueue_many` (`cancelq/store/lua/enqueue_many.lua`) records a whole
chunk in one call, with the same keys and the same idempotency rule as `enqueue.lua` (tests
compare the two), and pushes the accepted rows as batch messages of up to
`BULK_BATCH_SIZE` jobs (`cancelq.store.messages.build_batch_message`). Only the script
knows which rows are duplicates, so it assembles the messages from a template
(`BatchTemplate`) and one pre-encoded `jobs` entry per row, which this module makes. A
batch never spans two chunks. What reaches Redis, and how, is the store's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cancelq.core.contract import MAX_BATCH_JOBS
from cancelq.core.settings import DEFAULT_BULK_BATCH_SIZE
from cancelq.store.audit import AuditStore, NewJob
from cancelq.store.messages import BatchTemplate, job_fragment
from cancelq.store.records import Enqueued


@dataclass(frozen=True, slots=True)
class BulkRow:
    """One validated row: canonical ids, an optional reason."""

    line: int
    case_id: str
    event_id: str
    reason: str | None = None


class BulkWriter:
    """Enqueue chunks of rows of one run on the bulk queue (`enqueue_many.lua`)."""

    def __init__(
        self,
        store: AuditStore,
        *,
        run_id: str,
        requested_by: str | None,
        queue: str | None = None,
        batch_size: int = DEFAULT_BULK_BATCH_SIZE,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_JOBS:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_JOBS}, not {batch_size}")
        self.store = store
        self.run_id = run_id
        self.requested_by = requested_by
        self.batch_size = batch_size
        self.template = BatchTemplate(queue or store.queues.bulk, run_id=run_id,
                                      requested_by=requested_by)

    def send(self, rows: Sequence[BulkRow], *, now: float | None = None) -> list[Enqueued]:
        """Record and push the rows; one `Enqueued` per row (duplicates flagged), in order."""
        return self.start(rows, now=now)()

    def start(
        self, rows: Sequence[BulkRow], *, now: float | None = None
    ) -> Callable[[], list[Enqueued]]:
        """Send the chunk and return at once; call the result to read what became of each row.

        Redis runs the chunk while the caller reads and builds the next one
        (`AuditStore.start_enqueue_many`). A dropped connection is raised, not retried: the
        chunk may or may not have been applied, and running the file again sends only what
        is missing, the rest being duplicates of live jobs.
        """
        return self.store.start_enqueue_many(
            self._new_jobs(rows), template=self.template, batch_size=self.batch_size, now=now
        )

    @staticmethod
    def _new_jobs(rows: Sequence[BulkRow]) -> list[NewJob]:
        jobs: list[NewJob] = []
        for row in rows:
            job_id = uuid4_str()
            reason = row.reason or ""
            jobs.append((job_id, row.case_id, row.event_id, reason,
                         job_fragment(job_id, row.case_id, row.event_id, reason)))
        return jobs


def uuid4_str() -> str:
    """`str(uuid.uuid4())`, about three times faster (one urandom read, no UUID object)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
