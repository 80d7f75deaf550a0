"""What jobs cost in memory: Redis bytes per settled job, and worker RSS with a backlog.

Redis bytes: after a run has settled, every key is read with `MEMORY USAGE key SAMPLES 0`
(exact), grouped by its pattern (ids replaced by `{id}`), and the total divided by the jobs
settled; the broker's queues are empty by then, so this is the audit trail's cost.

Worker RSS (like bench/retry_memory.py, which compares against Celery's countdown retries):
the worker settles a warm-up first (thread stacks, pools, the allocator's high-water mark),
then the fake API answers 500 to every call until N jobs wait for a retry 600 s away, then it
hangs every call (so nothing drains) while `cancelq bulk` queues M more. RSS (the worker's
process tree, median of 5 samples) after each step.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.fake_control import spawn_fake_api
from bench.harness import Stack, rss_mb, stack, wait_until, write_rows
from bench.suite import Bench

TABLE_BYTES = "bytes"
TABLE_RSS = "rss"
TABLE_TRIPS = "trips"
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
_NUMBER = re.compile(r"(?<=:)\d+(?=:|$)")


def pattern(key: str) -> str:
    """`c360:job:<uuid>:attempts` -> `c360:job:{id}:attempts`."""
    return _NUMBER.sub("{n}", _ID.sub("{id}", key))


def key_bytes(s: Stack) -> dict[str, tuple[int, int]]:
    """(keys, bytes) by key pattern, every key of the private Redis."""
    groups: dict[str, tuple[int, int]] = {}
    batch: list[str] = []

    def flush() -> None:
        pipe = s.client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            count, total = groups.get(pattern(key), (0, 0))
            groups[pattern(key)] = (count + 1, total + int(size or 0))
        batch.clear()

    for key in s.client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    flush()
    return groups


def record_key_bytes(b: Bench, s: Stack, row: str, jobs: int) -> None:
    groups = key_bytes(s)
    b.results.add(TABLE_BYTES, row, "bytes/job", sum(t for _, t in groups.values()) / jobs)
    b.results.details[f"keys:{row}"] = {"jobs": jobs, "groups": groups}


def settled_rss(pid: int) -> float:
    samples = []
    for _ in range(5):
        samples.append(rss_mb(pid))
        time.sleep(0.4)
    return sorted(samples)[len(samples) // 2]


def _bulk_file(logs: Path, rows: int, name: str) -> Path:
    path = logs / f"{name}-{rows}.csv"
    write_rows(path, rows)
    return path


def run_rss(b: Bench) -> None:
    retrying, queued = b.sizes.retrying, b.sizes.queued
    fake = spawn_fake_api(0)  # its own: this scenario makes it fail, then hang
    row = "`celery -A worker worker`"
    try:
        with stack(b.checkout, fake.url, b.logs) as s:
            # the breaker off: with it, the 500s open it and the jobs wait without using an
            # attempt, so none would ever reach `retrying` (the state this scenario fills)
            worker = s.start_worker(CANCEL_RETRY_BASE_SECONDS="600",
                                    CANCEL_RETRY_MAX_SECONDS="600",
                                    CARE360_BREAKER_FAILURES="0")
            s.warm_up(worker, rows=retrying)
            b.results.add(TABLE_RSS, row, "warm MB", settled_rss(worker.pid))
            fake.configure(status=500)
            s.bulk(_bulk_file(b.logs, retrying, "retry"), "bench-retry").wait(600)
            wait_until(lambda: s.counter("state:retrying") >= retrying, 60 + retrying / 20,
                       "the jobs to wait for their retry", interval=0.5)
            b.results.add(TABLE_RSS, row, "in retry MB", settled_rss(worker.pid))
            fake.configure(latency_ms=3_600_000)
            s.bulk(_bulk_file(b.logs, queued, "queued"), "bench-queued").wait(900)
            time.sleep(2)
            b.results.add(TABLE_RSS, row, "queued + in retry MB", settled_rss(worker.pid))
            b.results.details["rss:counters"] = {
                name: s.counter(f"state:{name}") for name in ("queued", "running", "retrying")}
    finally:
        fake.stop()


@contextmanager
def monitored(s: Stack) -> Iterator[Counter[str]]:
    """Count the commands clients send (not those inside Lua) while the body runs: MONITOR.

    MONITOR slows Redis down, so this wraps a small untimed batch, never a measurement.
    """
    counts: Counter[str] = Counter()
    stopping = threading.Event()
    ready = threading.Event()

    def watch() -> None:
        with s.client.monitor() as monitor:
            ready.set()
            while not stopping.is_set():
                command = monitor.next_command()
                if command.get("client_type") != "lua":
                    counts[command["command"].split(" ", 1)[0].lower()] += 1

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield counts
    finally:
        stopping.set()
        s.client.ping()  # one more command, so that the watcher wakes up and sees the flag
        thread.join(10)


def record_round_trips(b: Bench, row: str, counts: Counter[str], jobs: int,
                       own: int) -> None:
    """Client commands per job; `own` of them were the bench's own polls (HMGET/GET)."""
    b.results.add(TABLE_TRIPS, row, "client commands/job", (sum(counts.values()) - own) / jobs)
    b.results.details[f"trips:{row}"] = {"jobs": jobs, "own": own, "counts": dict(counts)}
