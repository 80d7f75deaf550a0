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
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import BreakerState
from cancelq.core.settings import Settings
from cancelq.pipeline.gates import Defer, GateVerdict, Proceed
from cancelq.store.audit import AuditStore
from cancelq.store.codec import decode_text
from cancelq.store.scripts import Scripts

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
        # False while this process last saw the breaker closed with no streak: a success
        # then has nothing to reset, and costs no Redis call
        self._streak = True

    def __repr__(self) -> str:
        return (f"BreakerGate({self.failures} failures in {self.window_seconds:g}s, "
                f"probe every {self.probe_seconds:g}s)")

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        state, go, wait, changed, failures = self._op("check")
        self._streak = go != "go" or failures > 0
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
            if not self._streak:
                return  # closed, no failure since: nothing to reset
            op = "success"
        elif status is None or status >= SERVER_ERROR:
            op = "failure"
        else:
            return  # 429 and odd 2xx/4xx: not a sign that Care360 is down, nor up
        state, _go, _wait, changed, failures = self._op(op)
        self._streak = state != BreakerState.CLOSED or failures > 0
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

    def _op(self, op: str) -> tuple[str, str, str, bool, int]:
        state, go, wait, changed, failures = self.scripts("breaker", [
            self.prefix, op, self.failures, repr(self.window_seconds),
            repr(self.probe_seconds), repr(self.lock_seconds),
        ])
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
    )
