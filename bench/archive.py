"""`python -m bench.archive`: the archive's figures of issue 17, in one run.

- archive rate: jobs (two attempts each) written with `Archive.write` in the archiver's batch
  size, jobs/s, beside the 5,000 jobs/s target (5x the bulk drain rate of docs/benchmarks.md);
- reads on a large archive: `Archive.get` (what `cancelq status` does for an archived job)
  and `Archive.query(Query(case_id=...))` (`cancelq audit --case`), median and p95 of server
  round trips, on an archive of `--jobs` rows (1,000,000 for the target; fewer for a quick
  look);
- Redis RAM over a simulated week (`--week-jobs`, 100,000 for the target): jobs settled every
  hour of seven simulated days through the store's own scripts (enqueue, begin, finish) on a
  private redis-server, with a one-day retention; after each simulated hour the archiver
  drains the pending set into the archive and retention trims (archived jobs only) on the
  simulated clock, as a worker does every second and every minute. At the end of each day:
  Redis's `used_memory`, the bytes of the keys under the prefix (`MEMORY USAGE`), and the
  jobs in Redis and in the archive. Flat after the first day means only the window's jobs
  stay in Redis.

It makes a database of its own on the local PostgreSQL (`--pg`, trust auth as on this kind
of machine) and drops it at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import redis

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.archiver import Archiver
from cancelq.archive.database import make_engine
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import Attempt, JobRecord, Query
from producers.dev.local_redis import start_redis_server

BATCH = 1_000
DAY = 86_400.0
TRIM_BATCH = 200  # the worker's (worker/scheduler.py)


def records(n: int, cases: int, start: float) -> Iterator[list[JobRecord]]:
    """`n` settled jobs over `cases` cases, two attempts each, in batches."""
    batch: list[JobRecord] = []
    for i in range(n):
        at = start + i * 0.01
        attempts = (
            Attempt(1, at, 51.0, 503, "TransientResponse", "HTTP 503", "retry", 0.4),
            Attempt(2, at + 0.5, 48.0, 200, None, None, "cancelled"),
        )
        batch.append(JobRecord(
            job_id=str(uuid.uuid4()), case_id=f"00000000-0000-4000-8000-{i % cases:012d}",
            event_id=str(uuid.uuid4()), run_id=f"bench-{i // 20_000}", requested_by="bench",
            reason=None, state=State.SETTLED, outcome="cancelled", attempt_count=2,
            created_at=at, updated_at=at + 0.6, settled_at=at + 0.6, next_attempt_at=None,
            queue="cancellations", attempts=attempts,
        ))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def timed(fn: object, runs: int) -> tuple[float, float]:
    """Median and p95 of `runs` calls, in ms."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rate-jobs", type=int, default=50_000)
    parser.add_argument("--week-jobs", type=int, default=100_000,
                        help="Jobs settled over the simulated week (0: skip that part).")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if args.jobs:
        with scratch_database(args.pg) as url:
            run(url, args.jobs, args.rate_jobs)
    if args.week_jobs:
        with scratch_database(args.pg) as url:
            print_week(url, args.week_jobs)
        print_week(None, args.week_jobs)


@contextmanager
def scratch_database(pg: str) -> Iterator[str]:
    """A database of its own on the local PostgreSQL, dropped at the end."""
    name = f"cancelq_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
    finally:
        drop_database(pg, name)


def drop_database(pg: str, name: str, tries: int = 5) -> None:
    """DROP ... WITH (FORCE) waits 5 s for the sessions it ends; on a busy machine one may
    take longer to go: try again."""
    for attempt in range(tries):
        try:
            with psycopg.connect(pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.ObjectInUse:
            if attempt == tries - 1:
                raise
            time.sleep(2)


def run(url: str, jobs: int, rate_jobs: int) -> None:
    migrate.upgrade(make_engine(url))
    archive = Archive(url)
    start = time.time() - 86_400
    written, t0 = 0, time.perf_counter()
    last: JobRecord | None = None
    rate_jobs = min(rate_jobs, jobs)
    for batch in records(jobs, cases=max(1, jobs // 4), start=start):
        archive.write(batch)
        written += len(batch)
        last = batch[-1]
        if written == rate_jobs:
            rate = written / (time.perf_counter() - t0)
            print(f"| archive rate ({rate_jobs:,} jobs, 2 attempts each, {BATCH:,} a batch) "
                  f"| {rate:,.0f} jobs/s | >= 5,000 jobs/s |", flush=True)
    assert last is not None
    total = archive.count_jobs()
    get_ms = timed(lambda: archive.get(last.job_id), 200)
    case_ms = timed(lambda: archive.query(Query(case_id=last.case_id), with_attempts=True), 200)
    print(f"| `status JOB` (Archive.get) on {total:,} jobs | median {get_ms[0]:.2f} ms, "
          f"p95 {get_ms[1]:.2f} ms | <= 50 ms |")
    print(f"| `audit --case X` (Archive.query) on {total:,} jobs | median {case_ms[0]:.2f} ms, "
          f"p95 {case_ms[1]:.2f} ms | <= 50 ms |")
    archive.close()


def settle_hour(store: AuditStore, n: int, start: float) -> None:
    """`n` jobs enqueued, begun and settled through the store's scripts within the simulated
    hour from `start`, with a one-day retention; their broker messages are then taken off
    the queue, as a worker's fetch does."""
    pipe = store.redis.pipeline(transaction=False)
    calls = []
    for i in range(n):
        at = start + i * 3600 / n
        job_id = str(uuid.uuid4())
        request = CancelRequest(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
                                run_id=f"week-{int(start // DAY)}")
        message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                     queue=REALTIME_QUEUE, task_id=job_id)
        store.enqueue(job_id, request, message, queue=REALTIME_QUEUE, now=at, pipe=pipe)
        calls.append((job_id, request, at))
    pipe.execute()
    store.redis.delete(message.queue_key)  # the messages a worker would have fetched
    for job_id, request, at in calls:
        store.begin(job_id, request, max_attempts=8, queue=REALTIME_QUEUE,
                    queue_key=REALTIME_QUEUE, owner="bench", lease_seconds=30, now=at)
        call = Attempt(1, at + 0.05, 48.0, 200, None, None, "cancelled")
        store.finish(job_id, attempt=call, owner="bench", decision="settle",
                     outcome="cancelled", retention_seconds=DAY, now=at + 0.1)


def prefix_bytes(store: AuditStore) -> tuple[int, int]:
    """(keys, bytes) under the store's prefix, by `MEMORY USAGE` of each key."""
    keys = list(store.redis.scan_iter(match=f"{store.keys.prefix}:*", count=1_000))
    total = 0
    for start in range(0, len(keys), 1_000):
        pipe = store.redis.pipeline(transaction=False)
        for key in keys[start : start + 1_000]:
            pipe.memory_usage(key, samples=0)
        total += sum(int(n or 0) for n in pipe.execute())
    return len(keys), total


@dataclass(frozen=True)
class Day:
    """What Redis and the archive hold at the end of one simulated day."""

    day: int
    settled: int
    in_redis: int
    pending: int
    pending_bytes: int
    used_memory: int
    keys: int
    key_bytes: int
    archived: int
    seconds: float

    def row(self) -> str:
        return (f"| {self.day} | {self.settled:,} | {self.in_redis:,} | {self.pending:,} "
                f"({self.pending_bytes / 1024:,.0f} KiB) | "
                f"{self.used_memory / 2**20:.1f} MiB | {self.keys:,} keys, "
                f"{self.key_bytes / 2**20:.1f} MiB | {self.archived:,} | {self.seconds:.0f} |")


def week(url: str | None, jobs: int, days: int = 7) -> Iterator[Day]:
    """Redis RAM with a one-day hot window, `jobs` settled over `days`: with the archive at
    `url`, or with none (`url` None: retention trims every job due, and with it the job's
    entry on the archive's pending set, which nobody else takes off)."""
    archive = None
    if url is not None:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        archive = Archive(url)
    server = start_redis_server()
    store = AuditStore(redis.Redis.from_url(server.url, decode_responses=True))
    per_hour = max(1, jobs // (days * 24))
    start = (time.time() // DAY - days - 1) * DAY  # a midnight, the week ending yesterday
    try:
        for day in range(days):
            t0 = time.perf_counter()
            for hour in range(24):
                at = start + day * DAY + hour * 3600
                settle_hour(store, per_hour, at)
                if archive is not None:
                    Archiver(store, archive).drain()
                while store.trim(TRIM_BATCH, archived_only=archive is not None,
                                 retention_seconds=DAY, now=at + 3600) == TRIM_BATCH:
                    pass
            yield end_of_day(store, archive, day + 1, per_hour * 24 * (day + 1),
                             time.perf_counter() - t0)
    finally:
        store.redis.close()
        server.stop()
        if archive is not None:
            archive.close()


def end_of_day(store: AuditStore, archive: Archive | None, day: int, settled: int,
               seconds: float) -> Day:
    keys, size = prefix_bytes(store)
    return Day(day, settled, int(store.redis.zcard(store.keys.index_all)),
               store.archive_backlog()[0],
               int(store.redis.memory_usage(store.keys.archive_pending, samples=0) or 0),
               int(store.redis.info("memory")["used_memory"]), keys, size,
               archive.count_jobs() if archive is not None else 0, seconds)


def print_week(url: str | None, jobs: int) -> None:
    print(f"{'With the archive' if url else 'Without an archive'}, AUDIT_RETENTION_DAYS=1:")
    print("| day | jobs settled | jobs in Redis | pending (bytes) | Redis used_memory | keys "
          "under the prefix (bytes) | jobs in the archive | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for day in week(url, jobs):
        print(day.row(), flush=True)


if __name__ == "__main__":
    main()
