"""`python -m bench.web`: the web console's figures of issue 18, in one run.

A private `redis-server` is filled with `--jobs` jobs (1,000,000 for the targets) in 100 bulk
runs, through the producers' own Lua writer (`BulkWriter`); the broker lists are then
emptied (no worker runs here) and a few hundred jobs finished with two attempts each. Ten
worker heartbeats and an hour of call buckets are written. Then the console is asked, in
process (Starlette's TestClient, signed in: the time is the app's and the store's, plus a
fraction of a millisecond of the client), for:

- the job page of a job with two attempts (`/jobs/{id}`), target p95 <= 100 ms;
- filtered jobs pages: by case, by event, by run, by run and state, dead jobs, and the
  newest jobs with no filter; target p95 <= 100 ms;
- the overview (10 workers, the queues' priority lists, 100 runs, 60 minutes of calls),
  target p95 <= 150 ms.

Figures are printed as the rows of docs/benchmarks.md's tables.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable

import argon2
import redis
from fastapi.testclient import TestClient

from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.contract import CancelRequest
from cancelq.core.settings import load_settings
from cancelq.ops.health import Heartbeat, write_heartbeat
from cancelq.ops.readthrough import ReadThrough
from cancelq.store.audit import AuditStore
from cancelq.store.queues import PRIORITY_STEPS, queue_key
from cancelq.store.records import Attempt
from producers.dev.local_redis import start_redis_server
from web.app import create_app

RUNS = 100
CHUNK = 2_000
FINISHED = 300
SAMPLES = 200
PASSWORD = "bench-password"


def seed(store: AuditStore, jobs: int) -> list[str]:
    """`jobs` jobs in `RUNS` runs; returns the ids of the jobs finished with attempts."""
    per_run = max(1, jobs // RUNS)
    t0, made = time.perf_counter(), 0
    for run in range(RUNS):
        writer = BulkWriter(store, run_id=f"bench-{run:03d}", requested_by="bench",
                            batch_size=20)
        for start in range(0, per_run, CHUNK):
            rows = [BulkRow(i, str(uuid.uuid4()), str(uuid.uuid4()), "bench")
                    for i in range(start, min(per_run, start + CHUNK))]
            writer.send(rows)
            made += len(rows)
        # no worker here: drop the messages (every priority list), keep the jobs
        store.redis.delete(*(queue_key(queue, step) for queue in store.queues.all
                             for step in PRIORITY_STEPS))
    print(f"seeded {made:,} jobs in {RUNS} runs, {made / (time.perf_counter() - t0):,.0f}/s",
          flush=True)
    finished = random.sample(store.index_ids(store.keys.index_all, 0, 50_000), FINISHED)
    for i, job_id in enumerate(finished):
        _finish(store, job_id, dead=i % 10 == 0)
    return finished


def _finish(store: AuditStore, job_id: str, *, dead: bool) -> None:
    record = store.get(job_id, with_attempts=False)
    assert record is not None
    request = CancelRequest.parse(case_id=record.case_id, event_id=record.event_id,
                                  run_id=record.run_id)
    for number in (1, 2):
        begun = store.begin(job_id, request, max_attempts=2, queue=record.queue,
                            queue_key=record.queue, owner="bench", lease_seconds=30)
        last = number == 2
        status = 503 if not last or dead else 200
        attempt = Attempt(begun.attempt, time.time(), 50.0, status,
                          "TransientResponse" if status == 503 else None,
                          "HTTP 503: Service Unavailable" if status == 503 else None,
                          "retry" if not last else ("retries_exhausted" if dead else "cancelled"))
        if not last:
            _retry(store, job_id, attempt)
            continue
        store.finish(job_id, attempt=attempt, decision="dead" if dead else "settle",
                     outcome="retries_exhausted" if dead else "cancelled", owner="bench")


def _retry(store: AuditStore, job_id: str, attempt: Attempt) -> None:
    """The first attempt recorded as a retry, then made due at once (no scheduler here)."""
    from cancelq.store.messages import rerun_message

    record = store.get(job_id, with_attempts=False)
    assert record is not None
    store.finish(job_id, attempt=attempt, decision="retry", owner="bench", delay_seconds=0.0,
                 retry_message=rerun_message(record, store.queues, 0))
    store.promote_due()


def furnish(store: AuditStore) -> None:
    """Ten workers' heartbeats and an hour of call buckets, as a busy cluster has them."""
    now = store.now()
    for n in range(10):
        write_heartbeat(store, Heartbeat(f"w{n}@bench", "bench", 1000 + n, 32,
                                         tuple(store.queues.all), now - 3600, now, now - 1))
    minute = int(now) // 60
    pipe = store.redis.pipeline(transaction=False)
    for m in range(minute - 59, minute + 1):
        pipe.hset(store.keys.calls_minute(m), mapping={"200": 900, "503": 12, "429": 3})
    pipe.execute()


def timed(call: Callable[[], int], samples: int = SAMPLES) -> tuple[float, float]:
    """Median and p95 in ms; every answer must be a 200."""
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        status = call()
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def measure(client: TestClient, store: AuditStore, finished: list[str]) -> None:
    record, dead = store.get(finished[1]), store.get(finished[0])  # finished[0] died
    assert record is not None and dead is not None
    pages = {
        "job page (2 attempts)": lambda: f"/jobs/{random.choice(finished)}",
        "jobs ?case=": lambda: f"/jobs?case={record.case_id}",
        "jobs ?event=": lambda: f"/jobs?event={record.event_id}",
        "jobs ?run= (10,000 jobs)": lambda: f"/jobs?run={record.run_id}",
        "jobs ?run=&state=queued": lambda: f"/jobs?run={record.run_id}&state=queued",
        "jobs ?run=&state=dead (a few of 10,000)": lambda: f"/jobs?run={dead.run_id}&state=dead",
        "jobs ?state=dead": lambda: "/jobs?state=dead",
        "dead letters ?run=": lambda: f"/dead?run={dead.run_id}",
        "jobs, no filter (newest 50)": lambda: "/jobs",
        "overview": lambda: "/",
        "API /api/v1/jobs/{id}": lambda: f"/api/v1/jobs/{random.choice(finished)}",
    }
    jobs = int(store.counters().get("jobs", 0))
    for name, path in pages.items():
        median, p95 = timed(lambda path=path: client.get(path()).status_code)  # type: ignore[misc]
        target = "<= 150 ms" if name == "overview" else "<= 100 ms"
        print(f"| {name}, {jobs:,} jobs | median {median:.1f} ms, p95 {p95:.1f} ms "
              f"| {target} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    server = start_redis_server()
    try:
        client_redis = redis.Redis.from_url(server.url, decode_responses=True)
        store = AuditStore(client_redis)
        finished = seed(store, args.jobs)
        furnish(store)
        hashed = argon2.PasswordHasher().hash(PASSWORD)
        settings = load_settings(REDIS_URL=server.url, WEB_USERS=f"bench:viewer:{hashed}",
                                 WEB_SECRET="b" * 40)
        with TestClient(create_app(settings, ReadThrough(store, None))) as client:
            form = client.get("/login").text
            token = form.split('name="csrf_token" value="')[1].split('"')[0]
            client.post("/login", data={"name": "bench", "password": PASSWORD,
                                        "csrf_token": token})
            print(json.dumps({"redis_used_memory": client_redis.info("memory")[
                "used_memory_human"]}))
            measure(client, store, finished)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
