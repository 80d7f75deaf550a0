"""Dead letters: the jobs that ended `dead`, why and when, and replaying them.

A dead job (`unauthorized`, `retries_exhausted`) has nothing wrong with its request: the
cause was outside it (a wrong key, an API down for longer than the retry budget). Once the
cause is fixed, a replay puts the same job back on its queue with a fresh attempt budget
(`AuditStore.replay`, one Lua script). Its earlier attempts stay in the audit, followed by
a note of who replayed it and when. Listing reads the `idx:state:dead` index, never a scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cancelq.core.lifecycle import Outcome, State
from cancelq.store import auth_block
from cancelq.store.audit import AuditStore
from cancelq.store.messages import TaskMessage, priority_of, rerun_message
from cancelq.store.queues import Queues
from cancelq.store.records import Attempt, JobRecord, Query

READ_BATCH = 500
REPLAY_VERDICT = "replayed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead job and why it died: the last attempt (or note) before it was dead-lettered."""

    record: JobRecord
    source: Literal["redis", "archive"] = "redis"

    @property
    def cause(self) -> Attempt | None:
        for attempt in reversed(self.record.attempts):
            if attempt.verdict != REPLAY_VERDICT:
                return attempt
        return None

    @property
    def replays(self) -> int:
        return sum(1 for a in self.record.attempts if a.verdict == REPLAY_VERDICT)

    @property
    def why(self) -> str:
        cause = self.cause
        if cause is None:
            return self.record.outcome or "-"
        text = cause.error or cause.error_class or cause.verdict or "-"
        if cause.http_status is None or text.startswith(f"HTTP {cause.http_status}"):
            return text  # a TransientResponse's message already starts "HTTP 503: ..."
        return f"HTTP {cause.http_status}: {text}"

    def to_json(self) -> dict[str, Any]:
        """The documented `cancelq dlq list --json` object."""
        data = self.record.to_json()
        cause = self.cause
        return {
            "job_id": data["job_id"],
            "case_id": data["case_id"],
            "event_id": data["event_id"],
            "run_id": data["run_id"],
            "queue": data["queue"],
            "outcome": data["outcome"],
            "died_at": data["settled_at"],
            "created_at": data["created_at"],
            "attempt_count": data["attempt_count"],
            "calls": sum(1 for a in self.record.attempts if a.number > 0),
            "replays": self.replays,
            "why": self.why,
            "last_attempt": cause.to_json() if cause is not None else None,
            "source": self.source,
        }


def list_dead(
    store: AuditStore,
    *,
    outcome: str | None = None,
    run_id: str | None = None,
    limit: int = 100,
    since: float | None = None,
    until: float | None = None,
) -> list[DeadLetter]:
    """Dead jobs, newest first (by created time, bounded by `since`/`until`), with attempts."""
    query = Query(state=State.DEAD.value, outcome=outcome, run_id=run_id, limit=limit,
                  since=since, until=until)
    return [DeadLetter(r) for r in store.query(query, with_attempts=True)]


def dead_job_ids(
    store: AuditStore, *, outcome: str | None = None, run_id: str | None = None
) -> list[str]:
    """Every dead job id matching the filters, oldest first (for `replay --all`).

    Only ids whose record exists and is dead: an index entry left by a record deleted
    behind the store's back (an operator's DEL, an older release's TTL) is not a dead
    letter, and is dropped from the index here so the dead count recovers.
    """
    index = store.keys.index_state(State.DEAD.value)
    ids = store.index_ids(index)
    kept: list[str] = []
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        records = {r.job_id: r for r in store.get_many(chunk, with_attempts=False)}
        gone = [job_id for job_id in chunk if job_id not in records]
        if gone:
            store.drop_index_entries(index, gone)
        for job_id in chunk:
            record = records.get(job_id)
            if record is None or record.state is not State.DEAD:
                continue
            if (outcome is None or record.outcome == outcome) and (
                run_id is None or record.run_id == run_id
            ):
                kept.append(job_id)
    return kept


ReplayStatus = Literal["replayed", "would_replay", "refused", "missing"]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    job_id: str
    status: ReplayStatus
    state: str | None
    outcome: str | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("replayed", "would_replay")

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "state": self.state,
                "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    results: tuple[ReplayResult, ...]
    auth_block_cleared: bool

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def replay_message(record: JobRecord, queue_key: str | None, queues: Queues) -> TaskMessage:
    """A fresh message for the job, built exactly as producers and retries build theirs."""
    return rerun_message(record, queues, priority_of(queue_key))


def replay(
    store: AuditStore,
    job_ids: Iterable[str],
    *,
    who: str,
    dry_run: bool = False,
    clear_auth: bool = True,
) -> ReplayReport:
    """Replay each dead job; refuse (and report) any that is not dead or does not exist.

    When an `unauthorized` job is replayed, the auth block is lifted first (the operator
    replaying it says the key is fixed), so workers call again instead of dead-lettering
    the replayed jobs at once. A dry run changes nothing.
    """
    ids = list(dict.fromkeys(job_ids))
    records = _read_for_replay(store, ids)
    cleared = False
    wants_unblock = any(
        rec.state is State.DEAD and rec.outcome == Outcome.UNAUTHORIZED.value
        for rec, _ in records.values()
    )
    if clear_auth and wants_unblock and not dry_run:
        cleared = auth_block.clear(store)
    results = [_replay_one(store, job_id, records.get(job_id), who=who, dry_run=dry_run)
               for job_id in ids]
    return ReplayReport(tuple(results), cleared)


def _read_for_replay(
    store: AuditStore, ids: list[str]
) -> dict[str, tuple[JobRecord, str | None]]:
    """Each existing job's record and queue key (its priority), a batch at a time."""
    records: dict[str, tuple[JobRecord, str | None]] = {}
    for start in range(0, len(ids), READ_BATCH):
        chunk = ids[start : start + READ_BATCH]
        queue_keys = store.queue_keys_of(chunk)
        by_id = {r.job_id: r for r in store.get_many(chunk, with_attempts=False)}
        for job_id, queue_key in zip(chunk, queue_keys, strict=True):
            if job_id in by_id:
                records[job_id] = (by_id[job_id], queue_key)
    return records


def _replay_one(
    store: AuditStore,
    job_id: str,
    found: tuple[JobRecord, str | None] | None,
    *,
    who: str,
    dry_run: bool,
) -> ReplayResult:
    if found is None:
        return ReplayResult(job_id, "missing", None, None, "no such job")
    record, queue_key = found
    if record.state is not State.DEAD:
        return _refused(record.job_id, record.state.value, record.outcome)
    if dry_run:
        return ReplayResult(job_id, "would_replay", "dead", record.outcome,
                            f"would replay ({record.outcome})")
    done = store.replay(job_id, replay_message(record, queue_key, store.queues), who=who)
    if done.pair_holder:
        return ReplayResult(job_id, "refused", done.state, record.outcome,
                            f"refused: its (case, event) now belongs to live job "
                            f"{done.pair_holder}")
    if not done.applied:
        return _refused(job_id, done.state, None)
    return ReplayResult(job_id, "replayed", done.state, record.outcome,
                        f"replayed ({record.outcome}), replay #{done.replays}")


def _refused(job_id: str, state: str, outcome: str | None) -> ReplayResult:
    shown = f"{state} ({outcome})" if outcome else state
    return ReplayResult(job_id, "refused", state, outcome,
                        f"refused: job is {shown}, not dead; only dead jobs are replayed")


