"""The process-wide `Runtime` (settings, audit store, Care360 client), built once, lazily.

Lazily, because a prefork child must build its own connections after the fork, and
because importing the task module (Flower, beat, the CLI) must not need the API key.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from cancelq.care360.calls import BatchCaller, Caller, CallWatch, InThreadCaller
from cancelq.care360.fanout import FanOut
from cancelq.core.settings import Settings, load_settings
from cancelq.pipeline.auth_gate import AuthGate
from cancelq.pipeline.breaker import breaker_gate
from cancelq.pipeline.gates import Gate
from cancelq.pipeline.lease import LeaseKeeper
from cancelq.pipeline.rate_limit import rate_limit_gate
from cancelq.store.audit import AuditStore, audit_store
from cancelq.store.upgrade import check_schema

_lock = threading.Lock()
_runtime: Runtime | None = None

log = logging.getLogger("cancelq.pipeline")


@dataclass
class Runtime:
    """Everything an attempt needs, injected so tests can swap any part."""

    settings: Settings
    store: AuditStore
    #: makes the one call of a single job (real-time, retries)
    client: Caller
    rand: Callable[[], float] = field(default=random.random)
    gates: Sequence[Gate] = ()
    leases: LeaseKeeper | None = None
    #: makes a batch's calls at once; the worker's is the fan-out, the default one by one
    caller: BatchCaller | None = None
    #: how long the oldest call in flight has run (the fan-out), for the heartbeat
    watch: CallWatch | None = None

    def __post_init__(self) -> None:
        if self.leases is None:
            self.leases = LeaseKeeper(self.store, self.settings.lease_seconds)
        if self.caller is None:
            self.caller = InThreadCaller(self.client)

    @property
    def batch_caller(self) -> BatchCaller:
        assert self.caller is not None  # set by __post_init__
        return self.caller

    @property
    def lease_keeper(self) -> LeaseKeeper:
        assert self.leases is not None  # set by __post_init__
        return self.leases


def build_runtime(settings: Settings) -> Runtime:
    """The worker's runtime: one fan-out (one event loop, `CARE360_MAX_IN_FLIGHT` calls at
    most) makes every call of the process, single jobs' as urgent, batches' behind them."""
    store = audit_store(settings)
    try:
        check_schema(store)  # a v1 store is refused: `cancelq migrate` first (docs/upgrade.md)
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # up later: the store retries
        log.warning("audit store layout not checked, Redis unreachable: %s", exc)
    fanout = FanOut(
        settings.care360_base_url,
        settings.require_api_key(),
        timeout_seconds=settings.timeout_seconds,
        max_in_flight=settings.max_in_flight,
    )
    return Runtime(
        settings=settings,
        store=store,
        client=fanout,
        caller=fanout,
        watch=fanout,
        leases=LeaseKeeper(store, settings.lease_seconds, calls_stuck=fanout.stuck),
        # Auth first: while the key is known to be wrong, no other policy needs to run.
        # The breaker before the rate limit: a job that may not call takes no slot.
        gates=(AuthGate(store, backoff_seconds=settings.auth_backoff_seconds),)
        + _breaker_gates(settings, store)
        + _rate_limit_gates(settings, store),
    )


def _breaker_gates(settings: Settings, store: AuditStore) -> tuple[Gate, ...]:
    gate = breaker_gate(store, settings)
    return () if gate is None else (gate,)


def _rate_limit_gates(settings: Settings, store: AuditStore) -> tuple[Gate, ...]:
    """Last: a slot is taken only by a call that every other policy lets go ahead."""
    gate = rate_limit_gate(store, settings.rate_limit_per_second)
    return () if gate is None else (gate,)


def built_runtime() -> Runtime | None:
    """The process's runtime if something has built it, else None (never builds one)."""
    return _runtime


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(load_settings())
    return _runtime
