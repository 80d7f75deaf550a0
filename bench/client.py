"""CPU per call and calls/s of the two Care360 clients, side by side (issue 9's fan-out).

    python -m bench.client [--jobs 6000] [--repeats 3]

Three ways one process makes Care360 calls, against the fake API (bench/fake_api.py) at
0 ms (what a call costs in CPU) and 50 ms (what overlapping the waits buys):

- `threads`: `Care360Client.cancel` from 64 threads (one blocking httpx.Client per thread);
- `fanout`:  `FanOut.cancel` from the same 64 threads (the real-time path's shape);
- `batches`: `FanOut.cancel_many`, batches of 100 from 4 threads (the bulk path's shape).

Each measurement runs in a fresh child process (`--run MODE --url URL`) that warms up its
connections first and prints its own CPU seconds; the table shows medians of the repeats.
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from pydantic import SecretStr

from bench.fake_control import BENCH_ROOT, spawn_fake_api
from cancelq.care360.client import Answer, Care360Client
from cancelq.care360.fanout import FanOut

MODES = ("threads", "fanout", "batches")
THREADS = 64
BATCH_THREADS = 4
BATCH = 100
KEY = SecretStr("bench-key")
TIMEOUT = 30.0
T = TypeVar("T")
Pair = tuple[str, str]


def pairs(n: int) -> list[Pair]:
    return [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(n)]


def in_threads(threads: int, work: list[T], run: Callable[[T], int]) -> int:
    """Hand `work` items to `threads` threads; returns how many calls did not answer 200."""
    items: queue.SimpleQueue[T] = queue.SimpleQueue()
    for item in work:
        items.put(item)
    failures = [0] * threads

    def loop(index: int) -> None:
        while True:
            try:
                item = items.get_nowait()
            except queue.Empty:
                return
            failures[index] += run(item)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(failures)


def not_ok(result: Answer | Exception) -> int:
    return 0 if isinstance(result, Answer) and result.status == 200 else 1


def runner(mode: str, url: str) -> tuple[Callable[[int], int], Callable[[], None]]:
    """(run `n` calls the `mode` way and count failures, close)."""
    if mode == "threads":
        client = Care360Client(url, KEY, timeout_seconds=TIMEOUT)

        def one(pair: Pair) -> int:
            return not_ok(client.cancel(*pair))

        return (lambda n: in_threads(THREADS, pairs(n), one)), client.close
    fanout = FanOut(url, KEY, timeout_seconds=TIMEOUT, max_in_flight=256)
    if mode == "fanout":

        def call(pair: Pair) -> int:
            return not_ok(fanout.cancel(*pair))

        return (lambda n: in_threads(THREADS, pairs(n), call)), fanout.close

    def batch(chunk: list[Pair]) -> int:
        return sum(not_ok(t.result) for t in fanout.cancel_many(chunk))

    def run(n: int) -> int:
        work = pairs(n)
        return in_threads(BATCH_THREADS, [work[i:i + BATCH] for i in range(0, n, BATCH)], batch)

    return run, fanout.close


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(mode: str, url: str, jobs: int) -> dict[str, float]:
    """In this process: warm up (connections, threads, the loop), then time `jobs` calls."""
    run, close = runner(mode, url)
    try:
        run(512)
        cpu, started = cpu_seconds(), time.perf_counter()
        failures = run(jobs)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        close()
    return {"jobs": jobs, "seconds": seconds, "cpu_seconds": cpu, "failures": failures}


def child(mode: str, url: str, jobs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.client", "--run", mode, "--url", url, "--jobs", str(jobs)],
        cwd=BENCH_ROOT, check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def table(jobs: int, repeats: int) -> list[str]:
    rows = ["| client | latency | calls/s | CPU ms/call | failures |", "|---|---|---|---|---|"]
    for latency in (0, 50):
        fake = spawn_fake_api(latency)
        try:
            for mode in MODES:
                runs = [child(mode, fake.url, jobs) for _ in range(repeats)]
                rate = statistics.median(r["jobs"] / r["seconds"] for r in runs)
                cost = statistics.median(1000 * r["cpu_seconds"] / r["jobs"] for r in runs)
                failures = sum(int(r["failures"]) for r in runs)
                rows.append(f"| {mode} | {latency} ms | {rate:,.0f} | {cost:.3f} | {failures} |")
                print(rows[-1], flush=True)
        finally:
            fake.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(measure(args.run, args.url, args.jobs)))
        return
    print("\n".join(table(args.jobs, args.repeats)))


if __name__ == "__main__":
    main()
