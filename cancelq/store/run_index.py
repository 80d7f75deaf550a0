"""The bulk runs' index (`runs`: each run id by its start time) and each run's counters.

What a run's counters mean (finished? how far?) is `cancelq.bulk.runs`'s; this module only
reads them, one round trip each. It also keeps what bulk intake read for a run (the
`run_intake` hash): the counts the terminal that ran `cancelq bulk` printed, and the first
bad lines, so `cancelq run RUN` shows them to anyone later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

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


#: The intake counts kept with a run, added to by every `cancelq bulk` into it.
INTAKE_COUNTS = ("rows", "accepted", "duplicates", "invalid", "blank")
#: Bad lines kept with a run (the first ones, with their error): enough to find the rest.
INTAKE_BAD_LINES = 10
#: A run none of whose rows was accepted has no job whose retention would delete its
#: intake: it expires on its own after this long.
ORPHAN_INTAKE_SECONDS = 7 * 86_400


def record_intake(store: AuditStore, run_id: str, counts: Mapping[str, int],
                  bad_rows: Sequence[tuple[int, str]]) -> None:
    """Add one intake's counts to the run's (one transaction); the first bad lines stay."""
    key = store.keys.run_intake(run_id)
    first = [{"line": line, "error": error[:200]} for line, error in bad_rows[:INTAKE_BAD_LINES]]
    pipe = store.redis.pipeline(transaction=True)
    for name in INTAKE_COUNTS:
        pipe.hincrby(key, name, int(counts.get(name, 0)))
    pipe.hincrby(key, "intakes", 1)
    pipe.hsetnx(key, "bad_lines", json.dumps(first, separators=(",", ":")))
    if not counts.get("accepted"):
        pipe.expire(key, ORPHAN_INTAKE_SECONDS, nx=True)
    else:
        pipe.persist(key)
    pipe.execute()


def read_intake(store: AuditStore, run_id: str) -> dict[str, Any] | None:
    """The run's intake (None: none recorded, e.g. a run of `enqueue --run-id`)."""
    raw = {decode_text(k): decode_text(v)
           for k, v in store.redis.hgetall(store.keys.run_intake(run_id)).items()}
    if not raw:
        return None
    intake: dict[str, Any] = {name: _int(raw.get(name)) for name in (*INTAKE_COUNTS, "intakes")}
    try:
        bad = json.loads(raw.get("bad_lines") or "[]")
    except ValueError:
        bad = []
    intake["bad_lines"] = [b for b in bad if isinstance(b, dict)] if isinstance(bad, list) else []
    return intake


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
