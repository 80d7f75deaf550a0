"""The whole Redis key layout of the audit store and the retry schedule, in one place.

    c360:job:{job_id}                 HASH   the job record (see audit.JOB_FIELDS)
    c360:job:{job_id}:attempts        LIST   one JSON object per attempt, append-only
    c360:pair:{case_id}:{event_id}    STRING job id of the live job for that pair (idempotency)
    c360:idx:all                      ZSET   job ids by created time
    c360:idx:case:{case_id}           ZSET   job ids of a case, by created time
    c360:idx:event:{event_id}         ZSET   job ids of an event, by created time
    c360:idx:run:{run_id}             ZSET   job ids of a run, by created time
    c360:idx:state:{state}            ZSET   job ids now in that state, by created time
    c360:idx:outcome:{outcome}        ZSET   job ids settled with that outcome, by settled time
    c360:stats                        HASH   counters: state:{s}, outcome:{o}, jobs, attempts
    c360:run:{run_id}:stats           HASH   the same counters for one run
    c360:runs                         ZSET   run ids by first-seen time
    c360:delayed                      ZSET   job ids waiting for a retry, by due time
    c360:delayed:msg                  HASH   job id -> "queue_key\nmessage" to push when due
    c360:calls:{epoch_second}         HASH   calls made in that second, by HTTP status (TTL)
    c360:auth:blocked                 STRING set on a 401: calls paused until it expires (TTL)
    c360:ratelimit:LIMITER/care360/…  LIST   the rate limit's moving window (`limits` library)
    c360:ratelimit:bulk-turns         STRING next free turn of a deferred bulk job (TTL)
    c360:cleanup:lock:{file name}     STRING who is processing that inbox file (TTL, renewed)
    c360:redbeat:*                    -      celery-redbeat's schedule and its beat lock
    c360:workers                      HASH   node name -> JSON heartbeat (cancelq.ops.health)
    c360:telemetry                    HASH   workers' counters: calls:{status}, gate:{g}:{v}

Broker queues (Celery/kombu's own keys) are named by `cancelq.core.settings.REALTIME_QUEUE` and
`BULK_QUEUE`. Everything here sits under one prefix so that tests can give each run its
own prefix, and `KEY_PREFIX` can separate two deployments sharing a Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "c360"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def attempts(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:attempts"

    def pair(self, case_id: str, event_id: str) -> str:
        return f"{self.prefix}:pair:{case_id}:{event_id}"

    @property
    def index_all(self) -> str:
        return f"{self.prefix}:idx:all"

    def index_case(self, case_id: str) -> str:
        return f"{self.prefix}:idx:case:{case_id}"

    def index_event(self, event_id: str) -> str:
        return f"{self.prefix}:idx:event:{event_id}"

    def index_run(self, run_id: str) -> str:
        return f"{self.prefix}:idx:run:{run_id}"

    def index_state(self, state: str) -> str:
        return f"{self.prefix}:idx:state:{state}"

    def index_outcome(self, outcome: str) -> str:
        return f"{self.prefix}:idx:outcome:{outcome}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def run_stats(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:stats"

    @property
    def runs(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:delayed"

    @property
    def delayed_messages(self) -> str:
        return f"{self.prefix}:delayed:msg"

    def calls(self, epoch_second: int) -> str:
        return f"{self.prefix}:calls:{epoch_second}"

    @property
    def auth_blocked(self) -> str:
        return f"{self.prefix}:auth:blocked"

    @property
    def rate_limit(self) -> str:
        """Prefix of the rate limiter's keys (the `limits` storage's `key_prefix`)."""
        return f"{self.prefix}:ratelimit"

    @property
    def bulk_turns(self) -> str:
        return f"{self.prefix}:ratelimit:bulk-turns"

    def cleanup_lock(self, file_name: str) -> str:
        return f"{self.prefix}:cleanup:lock:{file_name}"

    @property
    def redbeat(self) -> str:
        return f"{self.prefix}:redbeat"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}:telemetry"
