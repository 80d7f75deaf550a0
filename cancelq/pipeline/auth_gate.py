"""Auth backoff: after a 401, stop calling Care360 for a while and dead-letter without a call.

A 401 means the key is wrong for every job, not for this one (a rotated or revoked key), so
calling on would burn one request per queued job and each would die the same way. On a 401
answer the gate sets `{prefix}:auth:blocked` with a TTL of `CARE360_AUTH_BACKOFF_SECONDS`;
while that key exists every worker (they share it through Redis) keeps consuming but ends
each job `unauthorized` without a call, leaving a note of why. Once the key is fixed,
`cancelq dlq replay --all --outcome unauthorized` clears the block and replays them.

One `PTTL` per attempt and no local cache, on purpose: the block must end everywhere the
moment an operator clears it, and a cached "not blocked" would let calls through after a
401 another worker already saw. `CARE360_AUTH_BACKOFF_SECONDS=0` turns the gate off.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome
from cancelq.pipeline.gates import EndWithoutCall, GateVerdict, Proceed
from cancelq.store import auth_block
from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.auth")

UNAUTHORIZED_STATUS = 401


class AuthGate:
    """A `Gate`: shares "the key is wrong" between every worker via Redis."""

    per_batch = True  # one block for every job

    def __init__(self, store: AuditStore, *, backoff_seconds: float) -> None:
        self.store = store
        self.backoff_seconds = backoff_seconds

    def __repr__(self) -> str:
        return f"AuthGate(backoff_seconds={self.backoff_seconds})"

    @property
    def enabled(self) -> bool:
        return self.backoff_seconds > 0

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        if not self.enabled:
            return Proceed()
        remaining = auth_block.blocked_for(self.store)
        if remaining is None:
            return Proceed()
        left = "until the block is cleared" if remaining == math.inf else (
            f"for another {remaining:.0f}s")
        return EndWithoutCall(
            Outcome.UNAUTHORIZED,
            f"not called: Care360 answered 401 recently (wrong or rotated API key); calls "
            f"paused {left} (CARE360_AUTH_BACKOFF_SECONDS). Fix the key, "
            f"then: cancelq dlq replay --all --outcome unauthorized",
        )

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        if not self.enabled or status != UNAUTHORIZED_STATUS:
            return
        note = json.dumps(
            {"at": time.time(), "job_id": job_id, "host": socket.gethostname()},
            separators=(",", ":"),
        )
        auth_block.block(self.store, note, self.backoff_seconds)
        log.warning(
            "Care360 answered 401 for job %s: no calls for %.0fs, jobs end unauthorized "
            "without a call (CARE360_AUTH_BACKOFF_SECONDS)",
            job_id, self.backoff_seconds,
        )

