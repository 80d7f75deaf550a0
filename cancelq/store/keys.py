"""The whole Redis key layout of the audit store and the retry schedule, in one place.

`LAYOUT` below is the only spelling of a key: `Keys` builds them for Python, and
`cancelq.store.scripts` turns the same templates into the Lua key builders every script
uses (`KEY.job(p, job_id)`, ...), so the two languages cannot disagree on a key
(`tests/store/test_scripts.py` checks every kind both ways). `COUNTERS` does the same for
the fields of the counter hashes.

Broker queues (Celery/kombu's own keys) are named in `cancelq.store.queues`. Everything here
sits under one prefix so that tests can give each run its own prefix, and `KEY_PREFIX` can
separate two deployments sharing a Redis.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

DEFAULT_PREFIX = "c360"

#: The layout version this code reads and writes, kept in `{prefix}:schema` (`LAYOUT["schema"]`).
#: v1 (until issue 19): a list per job for its attempts, a key per (case, event) pair and per
#: case and event, an `expiry` set and a settled state index: ~2.2 KB of Redis per settled
#: job. v2: the attempts inside the record, one `lookup` hash, retention read from the
#: outcome indexes. `cancelq migrate` (`cancelq.store.upgrade`) rewrites a v1 store.
SCHEMA_VERSION: Final = 2

#: kind -> key under "{prefix}:"; a `{name}` is filled in per key.
LAYOUT: Final[Mapping[str, str]] = {
    # STRING the layout version of the store (SCHEMA_VERSION); absent on a v1 store
    "schema": "schema",
    # HASH the job record and its attempts (fields: FIELDS; cancelq.store.records)
    "job": "job:{job_id}",
    # HASH the case and event lookups: LOOKUP field -> the job ids, space-separated, oldest
    # first; which job holds a (case, event) pair: the one whose record has no `no_pair`
    "lookup": "lookup",
    # ZSET job ids by created time: all, by run and by current state (but `settled`: nearly
    # every job of `index_all` is settled, so that index answers for it, filtered)
    "index_all": "idx:all",
    "index_run": "idx:run:{run_id}",
    "index_state": "idx:state:{state}",
    # ZSET job ids settled or dead with that outcome, by settled time; also retention's list
    # (trim.lua deletes what settled before now - retention)
    "index_outcome": "idx:outcome:{outcome}",
    # HASH counters (fields: COUNTERS), of the whole store and of one run
    "stats": "stats",
    "run_stats": "run:{run_id}:stats",
    # HASH what bulk intake read for the run: counts and its first bad lines (run_index.py)
    "run_intake": "run:{run_id}:intake",
    # ZSET run ids by first-seen time
    "runs": "runs",
    # ZSET job ids waiting for a retry, by due time
    "delayed": "delayed",
    # HASH job id -> "queue_key\nmessage" to push when due
    "delayed_messages": "delayed:msg",
    # HASH job id -> the entry `promote` refused (unknown queue, not a list): set aside
    "delayed_bad": "delayed:bad",
    # HASH message id -> JSON of a message Redis refused for good (WRONGTYPE...): set aside
    "poison": "poison",
    # ZSET job ids of running attempts, by lease expiry (Redis time): the reaper's list
    "leases": "leases",
    # HASH job id -> when its broker message was first seen nowhere (cancelq.store.lost)
    "lost_suspects": "lost:suspects",
    # STRING which worker runs the lost-message pass now (TTL): one pass at a time
    "lost_lock": "lost:lock",
    # ZSET settled and dead job ids not yet in the archive, by when they settled: added in
    # the script that settles a job, removed only after the archive committed the job
    # (cancelq.archive.archiver); retention keeps a job listed here when an archive is set
    "archive_pending": "archive:pending",
    # HASH the shared circuit breaker: state (BreakerState), opened_at, failures, ...
    "breaker": "breaker",
    # STRING who may probe Care360 while the breaker is open, and until when (TTL)
    "breaker_probe": "breaker:probe",
    # HASH calls made in that second, by HTTP status ('none': no answer) (TTL)
    "calls": "calls:{epoch_second}",
    # HASH calls made in that minute, by HTTP status (TTL 65 min): the web overview's chart
    "calls_minute": "calls:m:{epoch_minute}",
    # STRING set on a 401: calls paused until it expires (TTL)
    "auth_blocked": "auth:blocked",
    # prefix of the rate limit's moving window (`limits` library: LIMITER/care360/...)
    "rate_limit": "ratelimit",
    # STRING next free turn of a deferred bulk job (TTL)
    "bulk_turns": "ratelimit:bulk-turns",
    # STRING who is processing that inbox file (TTL, renewed)
    "cleanup_lock": "cleanup:lock:{file_name}",
    # prefix of celery-redbeat's schedule and its beat lock
    "redbeat": "redbeat",
    # HASH node name -> JSON heartbeat (cancelq.ops.health)
    "workers": "workers",
    # HASH workers' counters: calls:{status}, gate:{gate}:{verdict}
    "telemetry": "telemetry",
}

#: What a v1 store has that v2 does not: read (and deleted) only by `cancelq migrate`.
LAYOUT_V1: Final[Mapping[str, str]] = {
    # LIST one JSON object per attempt (`Attempt.encode`)
    "attempts": "job:{job_id}:attempts",
    # STRING job id of the live job for that pair
    "pair": "pair:{case_id}:{event_id}",
    # ZSETs of job ids by created time
    "index_case": "idx:case:{case_id}",
    "index_event": "idx:event:{event_id}",
    # ZSET settled and dead job ids, by when retention ends
    "expiry": "expiry",
}

#: logical name -> field of a job record hash. Short, because every job pays for each name
#: (a record is a listpack: names and values side by side); `JobRecord.from_hash` and the
#: scripts (`F.state`, ...) read them from here. Attempt i (1-based) is field `attempt`..i,
#: its texts `attempt`..i..ATTEMPT_TEXT[name] (cancelq.store.records).
FIELDS: Final[Mapping[str, str]] = {
    "case_id": "c",
    "event_id": "e",
    "run_id": "r",
    "requested_by": "b",
    "reason": "w",
    "state": "s",
    "outcome": "o",
    "attempts": "n",  # calls begun (the attempt budget's count)
    "created_at": "t",
    "updated_at": "u",  # absent once settled: then the settled time
    "settled_at": "z",
    "next_attempt_at": "x",
    "queue": "q",
    "queue_key": "k",
    "source": "y",
    "lease_owner": "lo",
    "lease_until": "lu",
    "attempt_started_at": "as",
    "finished_by": "f",
    "spared": "sp",
    "replays": "rp",
    "replay_token": "rt",
    "replayed_at": "ra",
    # '1': this job does not hold its (case, event) pair (a rejected message, a job another
    # took the pair from); of a pair's jobs, the one without it holds the pair (idempotency)
    "no_pair": "N",
    "entries": "A",  # attempts and notes recorded: the last one's number
    "attempt": "a",
}

#: kind -> field of the `lookup` hash.
LOOKUP: Final[Mapping[str, str]] = {
    "case": "c:{case_id}",
    "event": "e:{event_id}",
}

#: kind -> field of a counter hash (`stats`, `run_stats`).
COUNTERS: Final[Mapping[str, str]] = {
    "jobs": "jobs",  # jobs created
    "attempts": "attempts",  # calls made (a note without a call is not counted)
    "replays": "replays",  # dead jobs put back by an operator
    "state": "state:{state}",  # jobs now in that state
    "outcome": "outcome:{outcome}",  # jobs settled or dead with that outcome
}


def template_fields(template: str) -> list[str]:
    """The `{names}` of a template, in order (what a key builder takes after the prefix)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def lookup_field(kind: str, **names: str) -> str:
    """A field of the `lookup` hash: `lookup_field("case", case_id=c)` is "c:{c}"."""
    return LOOKUP[kind].format_map(names)


def counter(kind: str, **names: str) -> str:
    """A field of a counter hash: `counter("state", state="queued")` is "state:queued"."""
    return COUNTERS[kind].format_map(names)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def key(self, kind: str, **names: object) -> str:
        """The key of `kind` (a `LAYOUT` name) for these names, under the prefix."""
        return f"{self.prefix}:{LAYOUT[kind].format_map(names)}"

    def v1(self, kind: str, **names: object) -> str:
        """A key of a v1 store (`LAYOUT_V1`), for the migration only."""
        return f"{self.prefix}:{LAYOUT_V1[kind].format_map(names)}"

    @property
    def schema(self) -> str:
        return self.key("schema")

    def job(self, job_id: str) -> str:
        return self.key("job", job_id=job_id)

    @property
    def lookup(self) -> str:
        return self.key("lookup")

    @property
    def index_all(self) -> str:
        return self.key("index_all")

    def index_run(self, run_id: str) -> str:
        return self.key("index_run", run_id=run_id)

    def index_state(self, state: str) -> str:
        return self.key("index_state", state=state)

    def index_outcome(self, outcome: str) -> str:
        return self.key("index_outcome", outcome=outcome)

    @property
    def stats(self) -> str:
        return self.key("stats")

    def run_stats(self, run_id: str) -> str:
        return self.key("run_stats", run_id=run_id)

    def run_intake(self, run_id: str) -> str:
        return self.key("run_intake", run_id=run_id)

    @property
    def runs(self) -> str:
        return self.key("runs")

    @property
    def delayed(self) -> str:
        return self.key("delayed")

    @property
    def delayed_messages(self) -> str:
        return self.key("delayed_messages")

    @property
    def delayed_bad(self) -> str:
        return self.key("delayed_bad")

    @property
    def poison(self) -> str:
        return self.key("poison")

    @property
    def leases(self) -> str:
        return self.key("leases")

    @property
    def lost_suspects(self) -> str:
        return self.key("lost_suspects")

    @property
    def lost_lock(self) -> str:
        return self.key("lost_lock")

    @property
    def archive_pending(self) -> str:
        return self.key("archive_pending")

    @property
    def breaker(self) -> str:
        return self.key("breaker")

    @property
    def breaker_probe(self) -> str:
        return self.key("breaker_probe")

    def calls(self, epoch_second: int) -> str:
        return self.key("calls", epoch_second=epoch_second)

    def calls_minute(self, epoch_minute: int) -> str:
        return self.key("calls_minute", epoch_minute=epoch_minute)

    @property
    def auth_blocked(self) -> str:
        return self.key("auth_blocked")

    @property
    def rate_limit(self) -> str:
        """Prefix of the rate limiter's keys (the `limits` storage's `key_prefix`)."""
        return self.key("rate_limit")

    @property
    def bulk_turns(self) -> str:
        return self.key("bulk_turns")

    def cleanup_lock(self, file_name: str) -> str:
        return self.key("cleanup_lock", file_name=file_name)

    @property
    def redbeat(self) -> str:
        return self.key("redbeat")

    @property
    def workers(self) -> str:
        return self.key("workers")

    @property
    def telemetry(self) -> str:
        return self.key("telemetry")
