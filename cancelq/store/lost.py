"""Jobs whose broker message is nowhere: found from the audit, and published again once.

The broker can lose a message that the audit still waits on: a worker killed between taking a
message off its list and recording it unacked (the fetch closes that window, but a foreign
consumer or an older worker may not), a Redis restart that kept the records but not the
lists, an operator's `DEL` of a queue. Such a job stays `queued` or `retrying` forever, since
nothing will ever deliver it. The audit makes the loss visible: a job waiting for a message
has it in exactly one of these places, and nowhere else:

- its queue's lists (`cancelq.store.queues`, every priority step, both queues);
- kombu's `unacked` hash (delivered to a worker, not yet acknowledged);
- the delayed set (a retry or deferral waiting for its time).

`find_and_republish` runs from every worker's scheduler, one pass at a time across the
deployment (a lock), every half visibility timeout. A job is a suspect once it has been
unchanged for a visibility timeout (a delivered message is only that long in `unacked`
before kombu restores it) and its message is in none of the places; it is published again,
from its record, when the next pass still finds it missing. A message in transit between
two places (taken off a list, not yet recorded) is missed by one pass at most, and a copy
published in error costs only a message: a job's lease lets one copy call Care360 at a time,
and a copy of a settled job is acknowledged without a call. `lua/republish.lua` publishes
and notes the job in one step, and only once for one loss.

The scan reads the lists only when the audit has a suspect, so a deployment that loses
nothing pays one index read per pass.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cancelq.core.lifecycle import State, Verdict
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text
from cancelq.store.keys import FIELDS
from cancelq.store.messages import message_job_ids, priority_of, rerun_message
from cancelq.store.records import Attempt

log = logging.getLogger("cancelq.lost")

#: kombu's Redis transport: delivered, unacknowledged messages (tag -> [message, ex, rk])
UNACKED_KEY = "unacked"
#: jobs looked at in one pass, oldest first
CANDIDATES = 1000
#: list entries read per round trip while scanning a queue
SCAN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LostPass:
    """What one pass found: jobs whose message was nowhere, and those published again."""

    suspects: tuple[str, ...] = ()
    republished: tuple[str, ...] = ()


def find_and_republish(store: AuditStore, *, min_age: float, owner: str) -> LostPass | None:
    """One pass, if no other worker is running one (else None). `min_age`: the visibility
    timeout: how long a job must be unchanged, and a message missing, before it counts."""
    lock_ms = max(1000, int(min_age * 500))  # half the visibility timeout: the pass interval
    if not store.redis.set(store.keys.lost_lock, owner, nx=True, px=lock_ms):
        return None
    candidates = waiting_unchanged(store, older_than=min_age)
    missing = set(candidates) - placed_job_ids(store) if candidates else set()
    earlier = _suspects(store)
    due = sorted(job for job in missing if job in earlier)
    _remember(store, missing, earlier)
    republished = tuple(job for job in due if republish(store, job, min_age=min_age))
    return LostPass(tuple(sorted(missing)), republished)


def waiting_unchanged(store: AuditStore, *, older_than: float) -> list[str]:
    """`queued` and `retrying` jobs unchanged for `older_than` seconds and not in the
    delayed set: the jobs whose message must be in a queue list or unacked."""
    cutoff = time.time() - older_than
    ids: list[str] = []
    for state in (State.QUEUED, State.RETRYING):
        raw = store.redis.zrangebyscore(store.keys.index_state(state.value), "-inf", cutoff,
                                        start=0, num=CANDIDATES)
        ids += [decode_text(i) for i in raw]
    if not ids:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(store.keys.job(job_id), FIELDS["updated_at"])
        pipe.zscore(store.keys.delayed, job_id)
    replies = pipe.execute()
    out = []
    for n, job_id in enumerate(ids):
        updated, delayed = replies[2 * n], replies[2 * n + 1]
        if delayed is None and updated is not None and float(updated) <= cutoff:
            out.append(job_id)
    return out


def placed_job_ids(store: AuditStore) -> set[str]:
    """Every job a message in a queue list or in `unacked` carries. Read lists first and
    `unacked` last: a message that moves from a list to `unacked` during the scan is seen."""
    found: set[str] = set()
    for key in store.queues.list_keys():
        start = 0
        while True:
            chunk = store.redis.lrange(key, start, start + SCAN_CHUNK - 1)
            found.update(_ids(chunk))
            if len(chunk) < SCAN_CHUNK:
                break
            start += SCAN_CHUNK
    for _tag, entry in store.redis.hscan_iter(UNACKED_KEY, count=SCAN_CHUNK):
        found.update(message_job_ids(_unacked_message(entry)))
    return found


def republish(store: AuditStore, job_id: str, *, min_age: float) -> bool:
    """Publish the job's message again from its record, with a note (`lua/republish.lua`)."""
    record = store.get(job_id, with_attempts=False)
    if record is None:
        return False
    (key,) = store.queue_keys_of([job_id])
    message = rerun_message(record, store.queues, priority_of(key))
    note = Attempt(number=0, started_at=time.time(), duration_ms=None, http_status=None,
                   error_class="MessageLost",
                   error=f"its broker message was in no queue, unacked or delayed set for over "
                         f"{min_age:g}s; published again",
                   verdict=Verdict.REPUBLISHED.value)
    done = store.scripts("republish", [
        store.keys.prefix, job_id, message.queue_key, message.payload, note.encode(),
        repr(min_age), *store.queues.list_keys(),
    ])
    if int(done):
        log.warning("job %s: its broker message was lost (in no queue, unacked or delayed "
                    "set); published again from its record", job_id)
    return bool(int(done))


def _unacked_message(entry: str | bytes) -> dict[str, Any]:
    """kombu's unacked entry is `[message, exchange, routing_key]` as JSON."""
    try:
        value = json.loads(entry)
    except ValueError:
        return {}
    first = value[0] if isinstance(value, list) and value else None
    return first if isinstance(first, dict) else {}


def _ids(payloads: Iterable[str | bytes]) -> set[str]:
    return {job for payload in payloads for job in message_job_ids(payload)}


def _suspects(store: AuditStore) -> dict[str, str]:
    raw = store.redis.hgetall(store.keys.lost_suspects)
    return {decode_text(k): decode_text(v) for k, v in raw.items()}


def _remember(store: AuditStore, missing: set[str], earlier: dict[str, str]) -> None:
    """The suspects are exactly this pass's missing jobs, each with its first-seen time."""
    pipe = store.redis.pipeline(transaction=True)
    pipe.delete(store.keys.lost_suspects)
    if missing:
        now = repr(time.time())
        pipe.hset(store.keys.lost_suspects,
                  mapping={job: earlier.get(job, now) for job in missing})
    pipe.execute()
