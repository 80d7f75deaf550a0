"""Worker RSS with 10,000 jobs waiting for a retry: our delayed set vs Celery countdown.

    python -m bench.retry_memory [--jobs 10000]

Both workers run the threads pool (concurrency 32) against their own private redis-server;
each worker first settles N jobs that succeed (warm-up: thread stacks, connection pools and
the allocator's high-water mark), then gets N jobs whose every call fails (ours: the
simulator answers 500 with a 600 s backoff; baseline: the task retries with countdown=600).
RSS is sampled after the warm-up and again when all N jobs wait for their retry; the
difference is the memory the waiting jobs hold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import psutil  # type: ignore[import-untyped]
import redis

from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from producers.dev.local_redis import start_redis_server
from producers.enqueue import submit
from simulator.control import SimulatorControl, spawn_simulator

API_KEY = "bench-key"


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        total += child.memory_info().rss
    return float(total) / 2**20


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def settle_rss(pid: int) -> float:
    samples = []
    for _ in range(5):
        samples.append(rss_mb(pid))
        time.sleep(0.4)
    return sorted(samples)[len(samples) // 2]


def start_worker(app: str, env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-l", "warning", "-c", "32",
         "--without-mingle", "--without-gossip", "-n", f"{app}-{os.getpid()}@%h"],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    time.sleep(4)
    return process


def ours(jobs: int) -> tuple[float, float]:
    server = start_redis_server()
    sim, sim_url = spawn_simulator("--api-key", API_KEY, "--auto-create")
    env = dict(os.environ, REDIS_URL=server.url, CV_API_KEY=API_KEY,
               CARE360_BASE_URL=sim_url, CANCEL_RETRY_BASE_SECONDS="600",
               CANCEL_RETRY_MAX_SECONDS="600", CARE360_RATE_LIMIT="0")
    worker = start_worker("worker", env, "/tmp/bench-ours.log")
    try:
        store = AuditStore(redis.Redis.from_url(server.url, decode_responses=True))

        def batch() -> None:
            for _ in range(jobs):
                submit(CancelRequest(case_id=str(uuid.uuid4()), event_id=str(uuid.uuid4())),
                       store=store)

        batch()
        wait(lambda: store.counters().get("state:settled", 0) >= jobs, 600, "our warm-up")
        before = settle_rss(worker.pid)
        SimulatorControl(sim_url).set_faults(error_rate=1.0)
        batch()
        wait(lambda: store.counters().get("state:retrying", 0) >= jobs, 600, "our retries")
        after = settle_rss(worker.pid)
        print(f"  ours: {store.delayed_count()} jobs in the delayed set, "
              f"{store.redis.hlen('c360:delayed:msg')} parked messages, "
              f"unacked in broker: {store.redis.hlen('unacked')}")
        return before, after
    finally:
        worker.terminate()
        worker.wait(30)
        sim.terminate()
        server.stop()


def baseline(jobs: int) -> tuple[float, float]:
    server = start_redis_server()
    env = dict(os.environ, REDIS_URL=server.url)
    worker = start_worker("bench.countdown_app", env, "/tmp/bench-baseline.log")
    try:
        from bench.countdown_app import app

        app.conf.update(broker_url=server.url)
        client = redis.Redis.from_url(server.url)

        def batch(fail: bool) -> None:
            with app.producer_or_acquire() as producer:
                for _ in range(jobs):
                    app.send_task("baseline.cancel", kwargs={
                        "job_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()),
                        "event_id": str(uuid.uuid4()), "fail": fail}, producer=producer)

        batch(fail=False)
        wait(lambda: client.llen("baseline") == 0 and client.hlen("unacked") == 0, 600,
             "baseline warm-up")
        before = settle_rss(worker.pid)
        batch(fail=True)
        wait(lambda: client.llen("baseline") == 0 and client.hlen("unacked") >= jobs,
             600, "baseline ETA retries")
        after = settle_rss(worker.pid)
        print(f"  baseline: {client.hlen('unacked')} ETA messages unacked, held by the worker")
        return before, after
    finally:
        worker.terminate()
        worker.wait(60)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{args.jobs} jobs waiting for a retry 600 s away, after {args.jobs} warm-up jobs; "
          "worker RSS (MiB, median of 5)")
    ob, oa = ours(args.jobs)
    bb, ba = baseline(args.jobs)
    for name, b, a in (("ours (Redis delayed set)", ob, oa),
                       ("Celery countdown (ETA)", bb, ba)):
        print(f"{name:>26}: warm {b:7.1f}  waiting {a:7.1f}  delta {a - b:+7.1f} MiB  "
              f"({(a - b) * 2**20 / args.jobs:,.0f} B/job)")


if __name__ == "__main__":
    main()
