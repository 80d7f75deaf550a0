"""The circuit breaker: a `Gate` every worker shares through Redis (`lua/breaker.lua`).

After `CARE360_BREAKER_FAILURES` consecutive transient failures (connect errors, timeouts,
5xx) within `CARE360_BREAKER_WINDOW_SECONDS`, it opens: no worker calls Care360, and jobs
wait in the delayed set without using their attempts (`Defer`). Every
`CARE360_BREAKER_PROBE_SECONDS` one worker (whoever takes the probe lock) lets one job's call
through as a probe; a failed probe does not count against that job's budget. Any final
answer closes the breaker, and the backlog drains as the waiting jobs come back, under the
rate limit. Without it an outage longer than the retry span dead-letters every job and
keeps hammering the API.

State in `{prefix}:breaker` (a hash: `state`, `opened_at`, `failures`), which `cancelq stats`
and the metrics read. Each change is logged once, by the worker whose call made it.

A success anywhere ends the shared streak, whoever built it: no process can know that
another has not failed since it last looked. It costs no round trip of its own: it is owed
until this process's next `finish` (`AuditStore.ride_along`), which every answer is followed
by, and a failure of this process that comes first carries it (`owed`), so the two reach
Redis in the order they happened.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import BreakerState
from cancelq.core.settings import Settings
from cancelq.pipeline.gates import Defer, GateVerdict, Proceed
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text
from cancelq.store.scripts import Scripts

if TYPE_CHECKING:
    from redis.client import Pipeline

log = logging.getLogger("cancelq.breaker")

#: a probe's lock outlives its call (the call timeout) by this much
PROBE_LOCK_MARGIN_SECONDS = 1.0
SERVER_ERROR = 500


class BreakerGate:
    """A `Gate`: while Care360 keeps failing, nobody calls it but one probe at a time."""

    per_batch = True  # one state for every job

    def __init__(
        self,
        scripts: Scripts,
        prefix: str,
        *,
        failures: int,
        window_seconds: float,
        probe_seconds: float,
        call_timeout_seconds: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.scripts = scripts
        self.prefix = prefix
        self.failures = failures
        self.window_seconds = window_seconds
        self.probe_seconds = probe_seconds
        self.lock_seconds = max(probe_seconds, call_timeout_seconds + PROBE_LOCK_MARGIN_SECONDS)
        self.rand = rand
        # with `ride_on`, a success is not sent at once: the job whose success is owed
        # rides on this process's next finish, or goes first with its next failure
        self._rides = False
        self._owed_job: str | None = None
        self._owed_lock = threading.Lock()

    def ride_on(self, store: AuditStore) -> BreakerGate:
        """Send successes with `store`'s finishes instead of one round trip each."""
        self._rides = True
        store.ride_along(self._ride)
        return self

    def __repr__(self) -> str:
        return (f"BreakerGate({self.failures} failures in {self.window_seconds:g}s, "
                f"probe every {self.probe_seconds:g}s)")

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        state, go, wait, changed, _failures = self._op("check")
        if go == "probe":
            if changed:
                log.warning("circuit breaker %s: probing Care360 with job %s", state, job_id)
            return Proceed(probe=True)
        if go == "go":
            return Proceed()
        # spread the waiting jobs over a probe interval, so they do not all come back at once
        seconds = float(wait) + self.rand() * self.probe_seconds
        return Defer(round(seconds, 3), f"circuit breaker {state}: Care360 is failing")

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        if outcome is not None:
            if self._rides:
                with self._owed_lock:
                    self._owed_job = job_id  # sent with this answer's finish
                return
            self._report(job_id, status, self._op("success"))
        elif status is None or status >= SERVER_ERROR:
            with self._owed_lock:
                owed, self._owed_job = self._owed_job is not None, None
            self._report(job_id, status, self._op("failure", owed=owed))
        # else 429 and odd 2xx/4xx: not a sign that Care360 is down, nor up

    def _ride(self, pipe: Pipeline) -> Callable[[Any], None] | None:
        """The owed success, queued on a finish's pipeline (`AuditStore.ride_along`)."""
        with self._owed_lock:
            job_id, self._owed_job = self._owed_job, None
        if job_id is None:
            return None
        self.scripts("breaker", self._args("success", owed=False), client=pipe)
        return lambda reply: self._after_ride(job_id, reply)

    def _after_ride(self, job_id: str, reply: Any) -> None:
        if isinstance(reply, Exception):  # not applied (Redis away): still owed
            with self._owed_lock:
                self._owed_job = self._owed_job or job_id
            return
        self._report(job_id, None, self._decoded(reply))

    def _report(self, job_id: str, status: int | None,
                reply: tuple[str, str, str, bool, int]) -> None:
        """Log a change of state, once, by the worker whose answer made it."""
        state, _go, _wait, changed, _failures = reply
        if not changed:
            return
        if state == BreakerState.OPEN:
            log.error(
                "circuit breaker open: Care360 failing (job %s: %s); no calls but a probe "
                "every %gs, jobs wait without using attempts",
                job_id, "no answer" if status is None else f"HTTP {status}", self.probe_seconds,
            )
        else:
            log.warning("circuit breaker closed: Care360 answered job %s; resuming", job_id)

    def _args(self, op: str, *, owed: bool) -> list[Any]:
        return [self.prefix, op, self.failures, repr(self.window_seconds),
                repr(self.probe_seconds), repr(self.lock_seconds), "1" if owed else "0"]

    def _op(self, op: str, *, owed: bool = False) -> tuple[str, str, str, bool, int]:
        return self._decoded(self.scripts("breaker", self._args(op, owed=owed)))

    @staticmethod
    def _decoded(reply: Any) -> tuple[str, str, str, bool, int]:
        state, go, wait, changed, failures = reply
        return (decode_text(state), decode_text(go), decode_text(wait), bool(int(changed)),
                int(failures))


def breaker_gate(store: AuditStore, settings: Settings) -> BreakerGate | None:
    """The gate for the breaker settings; None when `CARE360_BREAKER_FAILURES` is 0."""
    if settings.breaker_failures <= 0:
        return None
    return BreakerGate(
        store.scripts,
        store.keys.prefix,
        failures=settings.breaker_failures,
        window_seconds=settings.breaker_window_seconds,
        probe_seconds=settings.breaker_probe_seconds,
        call_timeout_seconds=settings.timeout_seconds,
    ).ride_on(store)
