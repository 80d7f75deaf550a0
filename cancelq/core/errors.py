"""The project's exceptions, grouped by what the caller should do about them.

    CancelqError
    ├── ConfigError            a setting is wrong: the process refuses to start
    │   └── SchemaError            (store/upgrade) the Redis store is of another layout
    │                              version: `cancelq migrate` first
    ├── InvalidInput           a request field is wrong: nothing was sent anywhere
    │   ├── FileError              (bulk/intake) the whole bulk file is unreadable as input
    │   └── AmbiguousJobId         (ops/lookup) a job-id prefix names several jobs (exit 2)
    ├── JobNotFound            (ops/lookup) no stored job has this id or prefix (exit 1)
    ├── RedisUnavailable       REDIS_URL looks right but nothing answers there (yet)
    ├── ArchiveUnavailable     ARCHIVE_URL looks right but the database cannot be used now
    └── Care360Error           a call to Care360 gave no final answer
        └── RetryableError     try again later (optionally after `delay` seconds)
            ├── TransportError         the request did not complete
            │   ├── Care360Timeout
            │   └── Care360Unreachable
            ├── TransientResponse      an answer that says "not now" (5xx, 429, odd 2xx)
            └── UnexpectedError        (pipeline/attempt) anything else a call raised,
                                       retried like a transient failure

The ones marked with a module are defined beside the code that raises them, under the
class here that says what their caller does. Final answers from Care360 (the 400s, 401,
404) are not exceptions: they are outcomes (`cancelq.core.lifecycle.Outcome`), recorded once
and never retried. Programming mistakes stay outside this tree so that `except CancelqError`
never hides a bug.

Apart from the tree, on purpose: each is raised and caught inside one module, or ends a
process of its own, so no caller of the project's API ever sees it.

    NotRegular             (bulk/inbox) an inbox entry that is no regular file, refused
                           unread; an OSError, as what the OS refuses to open is
    ProbeFailed            (ops/doctor) a failed probe, caught in the same module and shown
                           as one check line
    FlowerAuthError        (worker/flower_auth) Flower's start is refused, one line, exit 2
    Unhealthy              (worker/healthcheck) a container healthcheck's failure, exit 1
    PrimaryMoved           (store/replication) a write went to a primary Sentinel no longer
                           names; a redis-py ConnectionError, so that every caller treats it
                           as the outage it is (the write is run again on the new primary)
    LoginRequired, Forbidden, Unauthorized, Throttled
                           (web/auth) a request the web console turns into its answer: a
                           redirect to the sign-in form, a 403, a 401, a 429
    SimulatorControlError, FaultConfigError, SeedError, _ControlError
                           (simulator/) the simulator imports nothing of cancelq: it stands
                           alone, as the vendor it plays does
"""

from __future__ import annotations


class CancelqError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(CancelqError):
    """A setting is missing or invalid; the message is one line naming the variable."""


class InvalidInput(CancelqError, ValueError):
    """A request field is invalid; `field` names it, the message says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RedisUnavailable(CancelqError):
    """Redis did not answer (refused, down, silent); the message names REDIS_URL, masked."""


class ArchiveUnavailable(CancelqError):
    """The archive database refused, is missing, or is behind the code's schema; the
    message is one line naming ARCHIVE_URL (masked) and what to do."""


class Care360Error(CancelqError):
    """A call to Care360 that ended without a final answer."""


class RetryableError(Care360Error):
    """Worth another attempt; `delay` is the server's own wish (Retry-After), if any."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class TransportError(RetryableError):
    """The HTTP exchange did not complete; Care360 may or may not have acted."""


class Care360Timeout(TransportError):
    """No answer within `CARE360_TIMEOUT_SECONDS`."""


class Care360Unreachable(TransportError):
    """Connection refused, reset, DNS or TLS failure."""


class TransientResponse(RetryableError):
    """Care360 (or a gateway in front of it) answered, but not with a final answer."""

    def __init__(
        self,
        status: int,
        *,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}" + (f": {error}" if error else ""), delay=delay)
        self.status = status
        self.error = error
