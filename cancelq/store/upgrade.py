"""The layout version of the audit store, and `cancelq migrate`: v1 rewritten as v2.

Why a one-shot migration and not reads that understand both layouts: every script both
reads and writes records (begin reads the attempts count and the lease, finish the owner,
replay the pair...), so two layouts would mean two versions of every script, and a record
half in each. The migration rewrites one job at a time, atomically (`lua/migrate_job.lua`),
and only if the v1 record is still what it read; a job already in v2 is skipped, so it
resumes where it stopped and may run twice. It needs the v1 workers and producers stopped
(their messages wait in the broker lists, untouched): a v1 script writing meanwhile would
add v1 keys that nothing reads. v2 code refuses a v1 store (`check_schema`) until the
migration wrote `{prefix}:schema` = `SCHEMA_VERSION` at its end. docs/upgrade.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cancelq.core.errors import ConfigError
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_hash, decode_text
from cancelq.store.keys import FIELDS, LAYOUT_V1, SCHEMA_VERSION
from cancelq.store.records import Attempt, stored_attempt

log = logging.getLogger("cancelq.store.upgrade")

#: v1 record fields that v2 keeps, under their `FIELDS` names; the rest are v1's own
#: (`job_id`: the key says it) or rewritten (`finished_by`, `updated_at`).
_V1_SAME = ("case_id", "event_id", "run_id", "requested_by", "reason", "state", "outcome",
            "attempts", "created_at", "settled_at", "next_attempt_at", "queue", "queue_key",
            "source", "lease_owner", "lease_until", "attempt_started_at", "spared", "replays",
            "replay_token", "replayed_at")


class SchemaError(ConfigError):
    """The store's layout is not the one this code reads: run `cancelq migrate`."""


def schema_version(store: AuditStore) -> int:
    """The store's layout version: its `schema` key, else 1 if it holds v1's `expiry` set or
    one of its oldest or newest jobs is a v1 record, else the current one (an empty store, or
    one whose version is not written yet)."""
    raw = store.redis.get(store.keys.schema)
    if raw is not None:
        return int(decode_text(raw))
    if store.redis.exists(store.keys.v1("expiry")):
        return 1
    # a few of the oldest and newest jobs (one could be a record deleted by hand)
    pipe = store.redis.pipeline(transaction=False)
    pipe.zrange(store.keys.index_all, 0, 4)
    pipe.zrange(store.keys.index_all, -5, -1)
    sample = {decode_text(i) for ids in pipe.execute() for i in ids}
    pipe = store.redis.pipeline(transaction=False)
    for job_id in sample:
        pipe.hexists(store.keys.job(job_id), "job_id")
    return 1 if any(pipe.execute()) else SCHEMA_VERSION


def check_schema(store: AuditStore) -> None:
    """Refuse a store of another layout (`SchemaError`); mark a new store as this one's."""
    version = schema_version(store)
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"the audit store under '{store.keys.prefix}' is schema v{version}, this code reads "
            f"v{SCHEMA_VERSION}: stop the workers and producers, then run `cancelq migrate`")
    store.redis.set(store.keys.schema, SCHEMA_VERSION, nx=True)


def v2_fields(raw: dict[str, str], attempts: Sequence[str]) -> dict[str, str]:
    """A v1 record (hash and attempts list) as the fields of its v2 record hash."""
    out = {FIELDS[name]: raw[name] for name in _V1_SAME if raw.get(name)}
    if raw.get("queue_key") == raw.get("queue"):
        out.pop(FIELDS["queue_key"], None)
    if raw.get("updated_at") and raw["updated_at"] != raw.get("settled_at"):
        out[FIELDS["updated_at"]] = raw["updated_at"]
    owner, sep, number = raw.get("finished_by", "").rpartition("#")
    if sep:
        out[FIELDS["finished_by"]] = f"{owner[-8:]}#{number}"
    for index, text in enumerate(attempts, start=1):
        out.update(stored_attempt(Attempt.decode(text), index))
    if attempts:
        out[FIELDS["entries"]] = str(len(attempts))
    return out


@dataclass
class Migrated:
    """What one `migrate` run did."""

    jobs: int = 0  # rewritten now
    already: int = 0  # found in v2 (an earlier run), or gone
    leftovers: int = 0  # v1 keys naming no job, deleted at the end


def migrate_jobs(store: AuditStore, ids: Sequence[str], done: Migrated) -> None:
    """Rewrite these jobs as v2 (`lua/migrate_job.lua`), counting in `done`; a job changed
    between its read and its rewrite is read again."""
    pending = list(ids)
    while pending:
        pipe = store.redis.pipeline(transaction=False)
        for job_id in pending:
            pipe.hgetall(store.keys.job(job_id))
            pipe.lrange(store.keys.v1("attempts", job_id=job_id), 0, -1)
        replies = pipe.execute()
        calls = []
        for i, job_id in enumerate(pending):
            raw, attempts = decode_hash(replies[2 * i]), [decode_text(a) for a in
                                                          replies[2 * i + 1]]
            if "job_id" not in raw:
                done.already += 1
                continue
            seen = f"{raw.get('state', '')}|{raw.get('updated_at', '')}|{len(attempts)}"
            fields = [x for item in v2_fields(raw, attempts).items() for x in item]
            calls.append((job_id, [store.keys.prefix, job_id, seen, *fields]))
        pipe = store.redis.pipeline(transaction=False)
        for _, args in calls:
            store.scripts("migrate_job", args, client=pipe)
        results = pipe.execute()
        done.jobs += sum(1 for r in results if int(r) == 1)
        done.already += sum(1 for r in results if int(r) == 0)
        pending = [job_id for (job_id, _), r in zip(calls, results, strict=True) if int(r) < 0]


def _delete_leftovers(store: AuditStore) -> int:
    """v1 keys no job named (a pair or index key of a record deleted behind the store's
    back): found by SCAN, the migration's only one, since no index lists them."""
    deleted = 0
    for kind in ("attempts", "pair", "index_case", "index_event"):
        pattern = store.keys.prefix + ":" + LAYOUT_V1[kind].format_map(
            {"job_id": "*", "case_id": "*", "event_id": "*"})
        keys = list(store.redis.scan_iter(match=pattern, count=1000))
        if kind == "attempts":  # job:*:attempts: only lists (a job id is a UUID, no colon)
            keys = [k for k in keys if store.redis.type(k) == "list"]
        for at in range(0, len(keys), 500):
            deleted += int(store.redis.delete(*keys[at : at + 500]))
    return deleted


def migrate(store: AuditStore, *, page: int = 500,
            progress: Callable[[Migrated], None] | None = None) -> Migrated:
    """Rewrite every v1 job of the store as v2 (see the module's docstring), then drop v1's
    own keys and write the schema version. Resumable; a v2 store is left as it is (a store
    whose version is not written yet and holds no v1 job gets it written)."""
    done = Migrated()
    if schema_version(store) == SCHEMA_VERSION:
        return done
    # the store says v1 from now until the end, even once its first jobs are v2 (a run
    # stopped half way leaves it so, and `check_schema` keeps refusing it)
    store.redis.set(store.keys.schema, 1, nx=True)
    start = 0
    while ids := [decode_text(i) for i in
                  store.redis.zrange(store.keys.index_all, start, start + page - 1)]:
        migrate_jobs(store, ids, done)
        start += len(ids)
        if progress is not None:
            progress(done)
    store.redis.delete(store.keys.v1("expiry"), store.keys.index_state("settled"))
    done.leftovers = _delete_leftovers(store)
    store.redis.set(store.keys.schema, SCHEMA_VERSION)
    log.info("migrate: %d jobs rewritten as v%d, %d already were, %d v1 keys left over",
             done.jobs, SCHEMA_VERSION, done.already, done.leftovers)
    return done
