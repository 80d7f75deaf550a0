"""The bulk runs' index (`runs`: each run id by its start time) and each run's counters.

What a run's counters mean (finished? how far?) is `cancelq.bulk.runs`'s; this module only
reads them, one round trip each.
"""

from __future__ import annotations

from typing import cast

from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_counters, decode_text


def run_entry(store: AuditStore, run_id: str) -> tuple[float | None, dict[str, int]]:
    """The run's start time (None: no such run) and its counters."""
    pipe = store.redis.pipeline(transaction=False)
    pipe.zscore(store.keys.runs, run_id)
    pipe.hgetall(store.keys.run_stats(run_id))
    score, raw = pipe.execute()
    return (float(score) if score is not None else None), decode_counters(raw)


def newest_runs(store: AuditStore, limit: int) -> list[tuple[str, float, dict[str, int]]]:
    """Up to `limit` runs, newest first: id, start time, counters."""
    entries = cast(
        list[tuple[str, float]],
        store.redis.zrevrange(store.keys.runs, 0, limit - 1, withscores=True),
    )
    pipe = store.redis.pipeline(transaction=False)
    for run_id, _ in entries:
        pipe.hgetall(store.keys.run_stats(decode_text(run_id)))
    return [(decode_text(run_id), float(score), decode_counters(raw))
            for (run_id, score), raw in zip(entries, pipe.execute(), strict=True)]
