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

import argparse
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.fake_control import spawn_fake_api
from bench.harness import Stack, rss_mb, stack, wait_until, write_rows
from bench.suite import Bench
from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Attempt
from cancelq.store.upgrade import migrate
from producers.dev.local_redis import start_redis_server

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


# -- the store alone: `python -m bench.footprint --store-only` ----------------------------


def settle_jobs(store: AuditStore, n: int, *, run_id: str | None, start: float) -> None:
    """`n` jobs enqueued, begun and settled `cancelled` on their first call, through the
    store's own scripts (no worker, no broker: their messages are dropped as a fetch would),
    with a 30-day retention, as a real-time job (`run_id` None) or a bulk run's."""
    rng = random.Random(19)  # times with all of time.time()'s digits, as a worker's are
    for first in range(0, n, 500):
        pipe = store.redis.pipeline(transaction=False)
        calls = []
        for i in range(first, min(n, first + 500)):
            at = start + i * 0.01 + rng.random() * 0.01
            job_id = str(uuid.UUID(int=(i + 1) * 7919 + (1 << 122)))
            request = CancelRequest(case_id=str(uuid.UUID(int=i * 31 + 17)),
                                    event_id=str(uuid.UUID(int=i * 37 + 5 + (1 << 64))),
                                    run_id=run_id)
            message = build_task_message(
                {"job_id": job_id, **request.model_dump(exclude_none=True)},
                queue=REALTIME_QUEUE, task_id=job_id)
            store.enqueue(job_id, request, message, queue=REALTIME_QUEUE, now=at, pipe=pipe)
            calls.append((job_id, request, at))
        pipe.execute()
        store.redis.delete(message.queue_key)
        owner = "bench-host:4242:0123456789abcdef"
        for job_id, request, at in calls:
            store.begin(job_id, request, max_attempts=8, queue=REALTIME_QUEUE,
                        queue_key=REALTIME_QUEUE, owner=owner, lease_seconds=30, now=at)
            took = round(rng.uniform(30, 90), 1)
            started = at + rng.random() * 0.01
            call = Attempt(1, started, took, 200, None, None, "cancelled")
            store.finish(job_id, attempt=call, owner=owner, decision="settle",
                         outcome="cancelled", retention_seconds=RETENTION,
                         now=started + took / 1000 + rng.random() * 0.001)


def client_key_bytes(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """(keys, bytes) by key pattern, every key of the Redis `client` reaches."""
    groups: dict[str, tuple[int, int]] = {}
    keys = list(client.scan_iter(count=1000))
    for at in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[at : at + 1000]:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(keys[at : at + 1000], pipe.execute(), strict=True):
            count, total = groups.get(pattern(key), (0, 0))
            groups[pattern(key)] = (count + 1, total + int(size or 0))
    return groups


def measure_layout(client: redis.Redis, make: Callable[[redis.Redis], AuditStore], n: int,
                   run_id: str | None, then: Callable[[AuditStore], object] | None = None
                   ) -> dict[str, tuple[int, int]]:
    """Settle `n` jobs on an empty Redis with the store `make` builds, then do `then` on the
    current store (migrate, archive); the bytes by key pattern."""
    client.flushall()
    settle_jobs(make(client), n, run_id=run_id, start=1_764_633_600.0)
    if then is not None:
        then(AuditStore(client))
    return client_key_bytes(client)


def archive_drained(store: AuditStore) -> None:
    """What the archiver leaves once it has committed every job: an empty pending set (the
    entries taken off as `Archiver` does, without a database)."""
    while entries := store.archive_pending(1_000):
        store.archived(entries)


def print_side_by_side(n: int, columns: dict[str, dict[str, tuple[int, int]]]) -> None:
    names = list(columns)
    print(f"| key pattern | {' | '.join(f'{c}: keys, B/job' for c in names)} |")
    print(f"| --- |{' --- |' * len(names)}")
    for key in sorted({k for groups in columns.values() for k in groups}):
        cells = []
        for c in names:
            keys, total = columns[c].get(key, (0, 0))
            cells.append(f"{keys:,}, {total / n:,.1f}" if keys else "-")
        print(f"| `{key}` | {' | '.join(cells)} |")
    totals = [f"**{sum(t for _, t in columns[c].values()) / n:,.0f}**" for c in names]
    print(f"| **bytes per settled job** | {' | '.join(totals)} |")


def store_only(n: int) -> None:
    """Bytes per settled job: v1 (its scripts, frozen in tests/store/v1/), the same v1 store
    after `cancelq migrate`, v2 (the store's scripts now), and v2 once an archive has taken
    every job off the pending set (the hot window's steady state); real-time jobs (no run)
    and a bulk run's jobs."""
    from tests.store.v1 import v1_store  # the frozen v1 scripts: a test fixture

    server = start_redis_server()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        print(f"redis-server {client.info('server')['redis_version']}, {n:,} jobs each")
        for label, run_id in (("real-time jobs", None), ("jobs of a bulk run", "bench-run")):
            print(f"\n{label}:\n")
            columns = {
                "v1": measure_layout(client, v1_store, n, run_id),
                "v1 after `cancelq migrate`": measure_layout(client, v1_store, n, run_id,
                                                             then=migrate),
                "v2": measure_layout(client, AuditStore, n, run_id),
                "v2, archive drained": measure_layout(client, AuditStore, n, run_id,
                                                      then=archive_drained),
            }
            print_side_by_side(n, columns)
    finally:
        server.stop()


RETENTION = 30 * 86_400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-only", action="store_true", required=True,
                        help="settle jobs through the store's scripts on a private "
                             "redis-server, no worker, and print bytes per settled job")
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    store_only(args.jobs)


if __name__ == "__main__":
    main()
