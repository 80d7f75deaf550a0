"""The lease keeper: one thread per worker process renews every attempt it is running.

`begin` gives each attempt a lease (`CANCEL_LEASE_SECONDS`, owner = worker node + a random
token); while the attempt runs, this keeper renews it every third of the lease, for all the
process's attempts in one script call (`lua/renew.lua`). A second copy of the job finds the
lease live and waits; the reaper (`worker.scheduler`) treats only an expired lease as a lost
worker. The keeper knows nothing of HTTP: an attempt registers with `hold(job_id, owner)`
around its call and its recording, whatever makes the call (a thread now, an event loop
later).

A lease is renewed only while the process's calls are within their deadline
(`CARE360_TIMEOUT_SECONDS` plus a small margin, `calls_stuck`, from the fan-out): a call
past it means the loop that runs the calls no longer ends them (the fan-out enforces the
deadline on every call, so one call overdue means every call on that loop is stuck). The
leases then run out and the reaper retries the jobs elsewhere, rather than a stuck process
holding them forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from redis.exceptions import RedisError

from cancelq.core.ticker import Ticker
from cancelq.store.audit import AuditStore

log = logging.getLogger("cancelq.lease")

#: renewals per lease: a lease survives two missed renewals (a Redis blip, a GC pause)
RENEWALS_PER_LEASE = 3


def this_worker() -> str:
    """This worker process as an attempt names it: "host:pid", as its heartbeat shows them."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner() -> str:
    """A lease owner: this worker node (host and process) and a token of its own."""
    return f"{this_worker()}:{uuid.uuid4().hex[:16]}"


def _never() -> bool:
    return False


class LeaseKeeper:
    """Renews the leases of the attempts this process holds; safe to share between threads."""

    def __init__(self, store: AuditStore, lease_seconds: float, *,
                 calls_stuck: Callable[[], bool] = _never) -> None:
        self.store = store
        self.calls_stuck = calls_stuck
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / RENEWALS_PER_LEASE
        self._held: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()
        # a Redis blip only skips a renewal: the next comes before the lease ends
        self._ticker = Ticker("lease-keeper", self.renew_once, interval=self.interval,
                              outage=(RedisError,), first_tick_after_interval=True)

    @contextmanager
    def hold(self, job_id: str, owner: str) -> Iterator[None]:
        """Keep `owner`'s lease on `job_id` alive for the duration of the block."""
        with self.hold_many([(job_id, owner)]):
            yield

    @contextmanager
    def hold_many(self, leases: Sequence[tuple[str, str]]) -> Iterator[None]:
        """Keep every (job id, owner) lease of a batch alive for the duration of the block."""
        with self._lock:
            self._held.update(dict.fromkeys(leases))
            self._start()
        try:
            yield
        finally:
            with self._lock:
                for lease in leases:
                    self._held.pop(lease, None)

    @property
    def held(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._held)

    def renew_once(self) -> list[str]:
        """Renew every held lease now; returns the jobs whose lease was lost.

        A job that finished after the list was taken is no longer its owner's either: it is
        not lost, only done, and is told apart by no longer being held here (a batch
        finishes many jobs at once, so that race was common and logged false alarms).
        """
        held = self.held
        if not held:
            return []
        if self.calls_stuck():
            log.warning("lease keeper: a Care360 call is past its deadline; %d lease(s) not "
                        "renewed (they run out and the reaper retries their jobs)", len(held))
            return []
        gone = self.store.renew_leases(self.lease_seconds, held)
        still = self.held
        lost = [job_id for job_id, owner in held if job_id in gone and (job_id, owner) in still]
        for job_id in lost:
            log.warning("job %s: lease lost while its attempt runs (expired and taken over)",
                        job_id)
        return lost

    def stop(self) -> None:
        self._ticker.stop(timeout=0)

    def _start(self) -> None:
        self._ticker.start()
