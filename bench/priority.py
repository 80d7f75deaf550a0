"""Real-time latency while a bulk run drains: two queues (ours) vs one shared FIFO queue.

    python -m bench.priority [--bulk 20000] [--samples 100] [--latency-ms 20]

Same run, same machine: a private redis-server, the simulator (`--auto-create`, fixed
latency) and one worker (`celery -A worker worker`, threads, no rate limit), restarted for
each mode. Each mode enqueues a bulk run of `--bulk` jobs (bulk intake), waits until the
worker is draining it, then sends one real-time job every `--interval` seconds and measures
enqueue-to-settled (the job's `settled_at - created_at`):

- two queues: real-time jobs on the real-time queue (`cancelq enqueue`'s default);
- one FIFO queue: the same jobs on the bulk queue, behind the backlog.

Prints p50/p99/max for each and how much of the backlog was left when the last sample went.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from cancelq.bulk.runs import run_progress
from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from producers.dev.local_redis import start_redis_server
from producers.enqueue import enqueue_cancellation
from simulator.control import spawn_simulator

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-priority-key"


def start_simulator(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    return spawn_simulator("--api-key", API_KEY, "--auto-create", "--latency-ms",
                           str(latency_ms), cwd=str(ROOT))


def start_worker(
    redis_url: str, sim_url: str, concurrency: int, log: Path
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, CV_API_KEY=API_KEY, CARE360_BASE_URL=sim_url,
               CARE360_RATE_LIMIT="0", WORKER_CONCURRENCY=str(concurrency))
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "warning",
         "--without-mingle", "--without-gossip", "-n", f"bench-{os.getpid()}@%h"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
        start_new_session=True,
    )
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_mode(store: AuditStore, args: argparse.Namespace, shared_fifo: bool,
             redis_url: str, sim_url: str, log: Path) -> dict[str, float]:
    store.redis.flushall()
    run_id = f"backlog-{'fifo' if shared_fifo else 'two'}"
    rows = [BulkRow(i, str(uuid.uuid4()), str(uuid.uuid4())) for i in range(args.bulk)]
    writer = BulkWriter(store, run_id=run_id, requested_by="bench")
    for start in range(0, len(rows), 1000):
        writer.send(rows[start : start + 1000])
    worker = start_worker(redis_url, sim_url, args.concurrency, log)
    try:
        deadline = time.monotonic() + 60
        while run_progress(store, run_id).done < 200:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start draining:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        queue = BULK_QUEUE if shared_fifo else REALTIME_QUEUE
        jobs = []
        for _ in range(args.samples):
            jobs.append(enqueue_cancellation(str(uuid.uuid4()), str(uuid.uuid4()),
                                             store=store, queue=queue).job_id)
            time.sleep(args.interval)
        left = run_progress(store, run_id).pending
        deadline = time.monotonic() + 600
        latencies: list[float] = []
        while True:
            records = store.get_many(jobs, with_attempts=False)
            if all(r.settled_at is not None for r in records):
                latencies = [r.settled_at - r.created_at for r in records if r.settled_at]
                break
            if time.monotonic() > deadline:
                raise SystemExit("real-time jobs did not settle in 600 s")
            time.sleep(0.2)
    finally:
        stop(worker)
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "left": float(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    server = start_redis_server()
    simulator, sim_url = start_simulator(args.latency_ms)
    store = AuditStore(redis.Redis.from_url(server.url, decode_responses=True))
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for shared_fifo in (False, True):
                name = "one shared FIFO queue" if shared_fifo else "two queues (real-time first)"
                print(f"running: {name} ...", flush=True)
                results[name] = run_mode(store, args, shared_fifo, server.url, sim_url,
                                         Path(tmp) / "worker.log")
    finally:
        stop(simulator)
        server.stop()

    print(f"\nreal-time enqueue-to-settled while a {args.bulk:,}-job bulk run drains "
          f"({args.samples} samples, every {args.interval}s; simulator {args.latency_ms:g} ms; "
          f"worker threads c={args.concurrency}; load average {os.getloadavg()[0]:.2f}):")
    print(f"  {'mode':<30} {'p50':>9} {'p99':>9} {'max':>9}  bulk left at last sample")
    for name, r in results.items():
        print(f"  {name:<30} {r['p50'] * 1000:>7.0f}ms {r['p99'] * 1000:>7.0f}ms "
              f"{r['max'] * 1000:>7.0f}ms  {r['left']:,.0f}")


if __name__ == "__main__":
    main()
