"""Liveness that proves consumption: worker heartbeats, queue-head ages, and the verdict.

A worker that answers a ping may still consume nothing (the reconnect hangs after a Redis
restart), so `cancelq health` does not ask the worker: it compares two facts kept in Redis.

- Every worker writes a heartbeat to `{prefix}:workers` (node name -> JSON) every
  `HEARTBEAT_SECONDS`: its name, host, pid, threads, the queues it consumes, and
  `consumed_at`, when it last received a message from the broker. Times are Redis's clock
  (`TIME`), so hosts need not agree on theirs.
- The head of each queue (the message a worker takes next: kombu pushes on the left and
  pops on the right) names a job; its record says since when it has been waiting
  (`waiting_since`). Messages with no record (sent straight to the broker by a foreign
  producer) have no known age and count in the depth only.

A worker's heartbeat also carries how long its oldest Care360 call in flight has run, and
when that means stuck (its deadline, `CARE360_TIMEOUT_SECONDS`, plus a margin: the fan-out
ends every call at the deadline, so a call older than that is on a loop that no longer
runs). Such a worker is unhealthy: it consumes, yet its calls never end.

The rule: a queue whose head has waited longer than `max_age` while no live worker that
consumes it received anything for `max_age` is not being consumed. A worker whose own
heartbeat is older than `max_age` (hung whole, or stopped) is dead. With several workers,
one that stalls while the others keep every head young is not caught by the queue rule
(nothing waits on it); its heartbeat still shows when it last consumed (`cancelq doctor`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from cancelq.core.lifecycle import State
from cancelq.store import heartbeats
from cancelq.store.audit import AuditStore
from cancelq.store.messages import message_job_ids
from cancelq.store.queues import PRIORITY_STEPS, queue_key

HEARTBEAT_SECONDS = 2.0
#: A heartbeat this old or older means the worker is offline (a few missed beats).
ONLINE_SECONDS = 15.0
#: Heartbeats of workers gone this long are removed by the others.
FORGET_AFTER_SECONDS = 86_400.0
DEFAULT_MAX_AGE_SECONDS = 60.0
#: What a worker's start-up probe of its API key found: Care360 accepted it, refused it
#: (401), or could not tell (unreachable, an answer that says nothing of the key).
KEY_VERDICTS = ("accepted", "rejected", "unknown")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One worker's last word. `at`, `started_at` and `consumed_at` are Redis time."""

    node: str
    host: str
    pid: int
    concurrency: int
    queues: tuple[str, ...]
    started_at: float
    at: float
    consumed_at: float | None = None
    received: int = 0
    #: seconds the oldest Care360 call in flight had run at `at` (None: none in flight)
    oldest_call_seconds: float | None = None
    #: a call older than this is stuck (the worker's deadline plus a margin)
    stuck_after_seconds: float | None = None
    #: the settings the worker runs with, secrets masked (`cancelq.ops.doctor.effective_settings`),
    #: so `cancelq doctor` judges what the workers use, not what its shell has
    settings: dict[str, str | None] | None = None
    #: Care360's verdict on the worker's key, probed at start (`KEY_VERDICTS`; None: not yet)
    key_verdict: str | None = None

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> Heartbeat | None:
        """None for anything that is not a heartbeat of ours (read defensively)."""
        try:
            raw = json.loads(text)
            consumed = raw.get("consumed_at")
            oldest, stuck_after = raw.get("oldest_call_seconds"), raw.get("stuck_after_seconds")
            return cls(
                node=str(raw["node"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                concurrency=int(raw["concurrency"]),
                queues=tuple(str(q) for q in raw["queues"]),
                started_at=float(raw["started_at"]),
                at=float(raw["at"]),
                consumed_at=None if consumed is None else float(consumed),
                received=int(raw.get("received", 0)),
                oldest_call_seconds=None if oldest is None else float(oldest),
                stuck_after_seconds=None if stuck_after is None else float(stuck_after),
                settings=_settings_of(raw.get("settings")),
                key_verdict=_verdict_of(raw.get("key_verdict")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def idle_seconds(self, now: float) -> float:
        """Since the last message received, or since start if none ever was."""
        return max(0.0, now - (self.consumed_at if self.consumed_at is not None
                               else self.started_at))

    def online(self, now: float, within: float = ONLINE_SECONDS) -> bool:
        return now - self.at <= within

    def calls_stuck(self) -> bool:
        """Whether a call in flight had outlived its deadline (plus margin) at the beat."""
        return (self.oldest_call_seconds is not None and self.stuck_after_seconds is not None
                and self.oldest_call_seconds > self.stuck_after_seconds)


def _settings_of(raw: object) -> dict[str, str | None] | None:
    """A heartbeat's settings, read defensively: names to text or None, else nothing."""
    if not isinstance(raw, dict):
        return None
    return {str(k): None if v is None else str(v) for k, v in raw.items()}


def _verdict_of(raw: object) -> str | None:
    return raw if isinstance(raw, str) and raw in KEY_VERDICTS else None


def this_host() -> str:
    return socket.gethostname()


def this_pid() -> int:
    return os.getpid()


def write_heartbeat(store: AuditStore, beat: Heartbeat) -> None:
    heartbeats.put(store, beat.node, beat.encode())


def remove_heartbeat(store: AuditStore, node: str) -> None:
    """A worker that stops on purpose says so: it is gone, not dead."""
    heartbeats.remove(store, node)


def read_heartbeats(store: AuditStore) -> list[Heartbeat]:
    beats = (Heartbeat.decode(value) for value in heartbeats.read_all(store).values())
    return sorted((b for b in beats if b is not None), key=lambda b: b.node)


def forget_gone(store: AuditStore, now: float) -> int:
    """Drop heartbeats older than `FORGET_AFTER_SECONDS` (and unreadable ones)."""
    gone = []
    for node, value in heartbeats.read_all(store).items():
        beat = Heartbeat.decode(value)
        if beat is None or now - beat.at > FORGET_AFTER_SECONDS:
            gone.append(node)
    return heartbeats.remove(store, *gone)


# -- the heads of the queues --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueHead:
    """The longest wait among the heads of a queue's priority lists (None: unknown/empty)."""

    queue: str
    job_id: str | None
    age_seconds: float | None


def waiting_since(record: Mapping[str, str]) -> float | None:
    """Since when the job has been ready to run: its retry's due time, else its last change.

    `updated_at` is the enqueue (or replay) time of a queued job. Time a job spent
    deferred by a gate (the rate limit) counts as waiting: the record does not change.
    """
    try:
        if record.get("state") == State.RETRYING.value and record.get("next_attempt_at"):
            return float(record["next_attempt_at"])
        stamp = record.get("updated_at") or record.get("created_at")
        return float(stamp) if stamp else None
    except ValueError:
        return None


def queue_heads(
    store: AuditStore, now: float, queues: Sequence[str] | None = None
) -> dict[str, QueueHead]:
    """Two pipelined round trips: the head message of every list, then their jobs.

    The queues are the store's own (`Queues.from_settings`: the deployment's prefix) unless
    named: a fixed default would read another deployment's lists and call a stall healthy.
    """
    queues = store.queues.all if queues is None else queues
    lists = [(name, queue_key(name, step)) for name in queues for step in PRIORITY_STEPS]
    # a batch's first job: all its jobs were recorded in one call, its wait is the batch's
    heads = [(name, next(iter(message_job_ids(m)), None) if m else None) for (name, _), m in
             zip(lists, store.next_messages([key for _, key in lists]), strict=True)]
    known = [(name, job) for name, job in heads if job]
    fields = ("state", "created_at", "updated_at", "next_attempt_at")
    result = {name: QueueHead(name, None, None) for name in queues}
    records = store.job_fields([job for _, job in known], fields)
    for (name, job), record in zip(known, records, strict=True):
        since = waiting_since(record)
        if since is None:
            continue
        age = round(max(0.0, now - since), 3)
        best = result[name]
        if best.age_seconds is None or age > best.age_seconds:
            result[name] = QueueHead(name, job, age)
    return result


# -- the verdict --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    """Which workers the verdict is about: named nodes, those on a host, or (empty) all."""

    nodes: tuple[str, ...] = ()
    host: str | None = None

    @property
    def everyone(self) -> bool:
        return not self.nodes and self.host is None

    def picks(self, beat: Heartbeat) -> bool:
        if self.nodes:
            return beat.node in self.nodes
        return self.host is None or beat.host == self.host

    def __str__(self) -> str:
        if self.nodes:
            return ", ".join(self.nodes)
        return f"workers on {self.host}" if self.host else "any worker"


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    why: str

    def line(self) -> str:
        return f"{'healthy' if self.healthy else 'unhealthy'}: {self.why}"


def judge(
    beats: Iterable[Heartbeat],
    heads: Mapping[str, QueueHead],
    *,
    now: float,
    max_age: float,
    selector: Selector = Selector(),
) -> Verdict:
    """Pure: the rule of the module docstring, applied to what was read."""
    chosen = [b for b in beats if selector.picks(b)]
    if selector.nodes:
        missing = sorted(set(selector.nodes) - {b.node for b in chosen})
        if missing:
            return Verdict(False, f"{missing[0]} has never sent a heartbeat")
    if not chosen:
        return Verdict(False, f"no heartbeat from {selector} (is a worker running?)")
    live = [b for b in chosen if now - b.at <= max_age]
    stale = [b for b in chosen if b not in live]
    if not live or (stale and not selector.everyone):
        worst = max(stale, key=lambda b: now - b.at)
        return Verdict(False, f"{worst.node}: no heartbeat for {now - worst.at:.0f}s "
                              f"(max {max_age:.0f}s)")
    stuck = _stuck_calls(live) or _rejected_key(live)
    if stuck is not None:
        return stuck
    for head in heads.values():
        if head.age_seconds is None or head.age_seconds <= max_age:
            continue
        consumers = [b for b in live if head.queue in b.queues]
        if not consumers:
            if selector.everyone:
                return Verdict(False, f"{head.queue}: a job has waited "
                                      f"{head.age_seconds:.0f}s and no live worker consumes it")
            continue
        if all(b.idle_seconds(now) > max_age for b in consumers):
            idle = min(b.idle_seconds(now) for b in consumers)
            who = consumers[0].node if len(consumers) == 1 else f"{len(consumers)} workers"
            return Verdict(False, f"{head.queue}: a job has waited {head.age_seconds:.0f}s and "
                                  f"{who} received nothing for {idle:.0f}s (max {max_age:.0f}s)")
    return Verdict(True, _healthy_line(live, heads, now))


def _stuck_calls(live: Sequence[Heartbeat]) -> Verdict | None:
    """Unhealthy when a live worker has a Care360 call in flight past its deadline."""
    for beat in live:
        if beat.calls_stuck():
            return Verdict(False, f"{beat.node}: a Care360 call has been in flight "
                                  f"{beat.oldest_call_seconds:.0f}s, past its deadline "
                                  f"(stuck after {beat.stuck_after_seconds:.0f}s)")
    return None


def _rejected_key(live: Sequence[Heartbeat]) -> Verdict | None:
    """Unhealthy when a live worker's key was refused at start: its jobs can only die."""
    for beat in live:
        if beat.key_verdict == "rejected":
            return Verdict(False, f"{beat.node}: Care360 rejected its API key (401) at start; "
                                  "fix CV_API_KEY_FILE and restart it")
    return None


def _healthy_line(live: Sequence[Heartbeat], heads: Mapping[str, QueueHead], now: float) -> str:
    who = live[0].node if len(live) == 1 else f"{len(live)} workers"
    seen = [now - b.consumed_at for b in live if b.consumed_at is not None]
    received = f"last received {max(0.0, min(seen)):.0f}s ago" if seen else "nothing received yet"
    ages = [h.age_seconds for h in heads.values() if h.age_seconds is not None]
    waiting = f"oldest waiting job {max(ages):.0f}s" if ages else "nothing waiting"
    return f"{who} alive, {received}; {waiting}"


def check(store: AuditStore, *, max_age: float, selector: Selector = Selector()) -> Verdict:
    """Read what `judge` needs (three round trips) and judge. Redis errors propagate."""
    now = store.now()
    return judge(read_heartbeats(store), queue_heads(store, now), now=now, max_age=max_age,
                 selector=selector)

