"""`python -m bench.archive`: the archive's figures of issue 17, in one run.

- archive rate: jobs (two attempts each) written with `Archive.write` in the archiver's batch
  size, jobs/s, beside the 5,000 jobs/s target (5x the bulk drain rate of docs/benchmarks.md);
- reads on a large archive: `Archive.get` (what `cancelq status` does for an archived job)
  and `Archive.query(Query(case_id=...))` (`cancelq audit --case`), median and p95 of server
  round trips, on an archive of `--jobs` rows (1,000,000 for the target; fewer for a quick
  look).

It makes a database of its own on the local PostgreSQL (`--pg`, trust auth as on this kind
of machine) and drops it at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator

import psycopg

from cancelq.archive import migrate
from cancelq.archive.archive import Archive
from cancelq.archive.database import make_engine
from cancelq.core.lifecycle import State
from cancelq.store.records import Attempt, JobRecord, Query

BATCH = 1_000


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
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"cancelq_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
    try:
        run(url, args.jobs, args.rate_jobs)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


if __name__ == "__main__":
    main()
