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

#: kind -> key under "{prefix}:"; a `{name}` is filled in per key.
LAYOUT: Final[Mapping[str, str]] = {
    # HASH the job record (fields: see cancelq.store.records.JobRecord.from_hash)
    "job": "job:{job_id}",
    # LIST one JSON object per attempt, append-only (cancelq.store.records.Attempt)
    "attempts": "job:{job_id}:attempts",
    # STRING job id of the live job for that pair (idempotency)
    "pair": "pair:{case_id}:{event_id}",
    # ZSETs of job ids by created time: all, and by case, event, run and current state
    "index_all": "idx:all",
    "index_case": "idx:case:{case_id}",
    "index_event": "idx:event:{event_id}",
    "index_run": "idx:run:{run_id}",
    "index_state": "idx:state:{state}",
    # ZSET job ids settled with that outcome, by settled time
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
    # ZSET settled and dead job ids, by when retention ends: the trimmer's list
    "expiry": "expiry",
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


def counter(kind: str, **names: str) -> str:
    """A field of a counter hash: `counter("state", state="queued")` is "state:queued"."""
    return COUNTERS[kind].format_map(names)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def key(self, kind: str, **names: object) -> str:
        """The key of `kind` (a `LAYOUT` name) for these names, under the prefix."""
        return f"{self.prefix}:{LAYOUT[kind].format_map(names)}"

    def job(self, job_id: str) -> str:
        return self.key("job", job_id=job_id)

    def attempts(self, job_id: str) -> str:
        return self.key("attempts", job_id=job_id)

    def pair(self, case_id: str, event_id: str) -> str:
        return self.key("pair", case_id=case_id, event_id=event_id)

    @property
    def index_all(self) -> str:
        return self.key("index_all")

    def index_case(self, case_id: str) -> str:
        return self.key("index_case", case_id=case_id)

    def index_event(self, event_id: str) -> str:
        return self.key("index_event", event_id=event_id)

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
    def expiry(self) -> str:
        return self.key("expiry")

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
