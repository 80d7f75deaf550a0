"""Jobs that ended before the archive was configured (or before this version listed ended
jobs for it): put on the pending set once, so the archiver copies them too.

Read a page of each ended-state index at a time (never the keyspace), and add each job with
its settled time, `NX`: a job already pending keeps its entry. A job trimmed or replayed
between the read and the add is harmless: the archiver drops an entry whose job is gone or
live again, and a job that ends again is listed again by the script that ends it.
"""

from __future__ import annotations

from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text

PAGE = 1_000


def backfill(store: AuditStore, page: int = PAGE) -> int:
    """List every settled and dead job on the archive's pending set; returns how many
    entries were new."""
    added = 0
    for state in (State.SETTLED, State.DEAD):
        index, start = store.keys.index_state(state.value), 0
        while True:
            ids = [decode_text(i) for i in store.redis.zrange(index, start, start + page - 1)]
            if not ids:
                break
            added += _add(store, ids)
            start += page
    return added


def _add(store: AuditStore, job_ids: list[str]) -> int:
    pipe = store.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(store.keys.job(job_id), "settled_at")
    ended = {job_id: float(at) for job_id, at in zip(job_ids, pipe.execute(), strict=True)
             if at}
    if not ended:
        return 0
    added = store.redis.zadd(store.keys.archive_pending, dict(ended), nx=True)
    return int(added or 0)
