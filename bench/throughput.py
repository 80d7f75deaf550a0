"""Jobs per second and CPU per job: the scripts, plain Celery, and cancelq's two paths.

Each function is one measurement of one repeat, in a fresh private Redis with a fresh worker
that has settled a warm-up first. Timing starts when the producer starts (`cancelq bulk`,
the first `enqueue_cancellation()`, the first `send_task`) and ends when the bench first
sees every job settled (it polls the counters every 50 ms). Worker CPU is psutil's user +
system time of the worker's process tree over the same interval, divided by the jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from celery import Celery

from bench.autoretry_app import DONE_KEY, QUEUE
from bench.footprint import monitored, record_key_bytes, record_round_trips
from bench.harness import (
    BENCH_ROOT,
    Stack,
    command_delta,
    commandstats,
    cpu_seconds,
    stack,
    wait_until,
    write_rows,
)
from bench.profile import profiled
from bench.suite import Bench

SCRIPT_ROWS = {
    "threads": "the script: 64 threads, one httpx.Client each",
    "shared": "the script: 64 threads sharing one httpx.Client",
}
AUTORETRY_ROW = "plain Celery: threads task, autoretry_for, result backend (-c 64 -E)"
BULK_ROW = "cancelq bulk + `celery -A worker worker`"
REALTIME_ROW = "enqueue_cancellation() x N + `celery -A worker worker`"
DRIVER = BENCH_ROOT / "bench" / "drivers" / "realtime.py"


def run_script(b: Bench, mode: str, latency: int, table: str) -> None:
    """The user's script in its own process; its CPU is its whole process's."""
    argv = [sys.executable, "-m", "bench.scripts", "--mode", mode,
            "--url", b.fakes[latency].url, "--jobs", str(b.sizes.script_jobs)]
    out = subprocess.run(argv, cwd=BENCH_ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["failures"]:
        raise SystemExit(f"bench: the {mode} script saw {result['failures']} failed calls")
    row = SCRIPT_ROWS[mode]
    b.results.add(table, row, "jobs/s", result["jobs"] / result["seconds"])
    b.results.add(table, row, "cpu ms/job", 1000 * result["cpu_seconds"] / result["jobs"])


def _measured(b: Bench, s: Stack, table: str, row: str, pid: int, jobs: int,
              started: float, ended: float, cpu0: float, commands0: dict[str, int],
              reads0: int) -> None:
    """Record jobs/s, worker CPU per job and Redis commands per job of one measurement."""
    commands = command_delta(commands0, commandstats(s.client))
    own = s.reads - reads0 + 1  # the bench's polls, and the INFO that read these numbers
    b.results.add(table, row, "jobs/s", jobs / (ended - started))
    b.results.add(table, row, "cpu ms/job", 1000 * (cpu_seconds(pid) - cpu0) / jobs)
    b.results.add(table, row, "commands/job", (sum(commands.values()) - own) / jobs)
    b.results.details[f"commands:{table}:{row}"] = commands


def _round_trips(b: Bench, s: Stack, row: str, jobs: int, send: Callable[[], object],
                 done: Callable[[], int]) -> None:
    """An untimed batch under MONITOR: the commands clients send per job."""
    before, reads0 = done(), s.reads
    with monitored(s) as counts:
        send()
        wait_until(lambda: done() >= before + jobs, 120 + jobs / 10, f"{row}: the batch")
    record_round_trips(b, row, counts, jobs, own=s.reads - reads0 + 1)


def _send_autoretry(redis_url: str, jobs: int) -> None:
    """Publish like `apply_async` in a loop, from an app with no result backend."""
    producer_app = Celery("bench-producer", broker=redis_url)
    try:
        with producer_app.producer_or_acquire() as producer:
            for _ in range(jobs):
                producer_app.send_task(
                    "baseline.autoretry_cancel", queue=QUEUE, producer=producer,
                    kwargs={"case_id": str(uuid.uuid4()), "event_id": str(uuid.uuid4())})
    finally:
        producer_app.close()


def run_autoretry(b: Bench, latency: int, table: str, footprint: bool = False) -> None:
    jobs, warm = b.sizes.celery_jobs, 200
    with stack(b.checkout, b.fakes[latency].url, b.logs) as s:
        # -E: task events on, as ops run it to watch it in Flower (issue 19 compares that way)
        argv = [sys.executable, "-m", "celery", "-A", "bench.autoretry_app", "worker", "-c", "64",
                "-E"]
        worker = s.spawn(argv, "worker-autoretry", s.env(PYTHONPATH=str(BENCH_ROOT)),
                         cwd=BENCH_ROOT)

        def done() -> int:
            s.reads += 1
            return int(s.client.get(DONE_KEY) or 0)

        _send_autoretry(s.redis_url, warm)
        wait_until(lambda: done() >= warm, 180, "the autoretry worker's warm-up")
        cpu0, commands0, reads0 = cpu_seconds(worker.pid), commandstats(s.client), s.reads
        started = time.perf_counter()
        _send_autoretry(s.redis_url, jobs)
        ended = wait_until(lambda: done() >= warm + jobs, 60 + jobs / 20, "autoretry jobs")
        _measured(b, s, table, AUTORETRY_ROW, worker.pid, jobs, started, ended, cpu0,
                  commands0, reads0)
        if footprint:
            record_key_bytes(b, s, AUTORETRY_ROW, warm + jobs)
            _round_trips(b, s, AUTORETRY_ROW, 200, lambda: _send_autoretry(s.redis_url, 200),
                         done)


def run_bulk(b: Bench, table: str, footprint: bool = False) -> None:
    """`cancelq bulk` of N rows, timed from its start until the last job is settled."""
    rows = b.sizes.bulk_rows
    path = b.logs / f"rows-{rows}.csv"
    if not path.exists():
        write_rows(path, rows)
    with stack(b.checkout, b.fakes[50].url, b.logs) as s:
        worker = s.start_worker()
        s.warm_up(worker)
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        cpu0, commands0, reads0 = cpu_seconds(worker.pid), commandstats(s.client), s.reads
        started = time.perf_counter()
        s.bulk(path, run_id)
        ended = wait_until(lambda: s.done(run_id) >= rows, 120 + rows / 20, "the bulk run")
        _measured(b, s, table, BULK_ROW, worker.pid, rows, started, ended, cpu0, commands0,
                  reads0)
        if footprint:
            small = b.logs / "rows-500.csv"
            write_rows(small, 500)
            _round_trips(b, s, BULK_ROW, 500, lambda: s.bulk(small, "trips").wait(), s.done)
            if b.profile:  # fresh pairs: a settled pair's row would be a duplicate
                fresh = b.logs / "rows-profile.csv"
                write_rows(fresh, rows)
                with profiled(b, worker.pid, enabled=True, path="bulk"):
                    s.bulk(fresh, "profiled")
                    wait_until(lambda: s.done("profiled") >= rows, 120 + rows / 20,
                               "the profiled bulk run")


def start_driver(s: Stack, *args: str) -> subprocess.Popen[bytes]:
    """bench/drivers/realtime.py inside the checkout; returns once it is ready."""
    driver = s.spawn([sys.executable, str(DRIVER), *args], "driver",
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert driver.stdout is not None
    if driver.stdout.readline().strip() != b"ready":
        raise SystemExit(f"bench: the real-time driver did not start; see {s.logs}/driver.log")
    return driver


def go(driver: subprocess.Popen[bytes]) -> None:
    assert driver.stdin is not None
    driver.stdin.write(b"go\n")
    driver.stdin.flush()


def run_realtime(b: Bench, latency: int, table: str, footprint: bool = False) -> None:
    """N `enqueue_cancellation()` calls one after another from one process."""
    jobs = b.sizes.realtime_jobs
    with stack(b.checkout, b.fakes[latency].url, b.logs) as s:
        worker = s.start_worker()
        s.warm_up(worker)
        driver = start_driver(s, "burst", "--jobs", str(jobs))
        before = s.done()
        cpu0, commands0, reads0 = cpu_seconds(worker.pid), commandstats(s.client), s.reads
        started = time.perf_counter()
        go(driver)
        ended = wait_until(lambda: s.done() >= before + jobs, 120 + jobs / 20,
                           "the real-time jobs")
        _measured(b, s, table, REALTIME_ROW, worker.pid, jobs, started, ended, cpu0,
                  commands0, reads0)
        assert driver.stdout is not None
        enqueued = json.loads(driver.stdout.readline())
        b.results.add(table, REALTIME_ROW, "enqueue calls/s", jobs / enqueued["seconds"])
        if footprint:
            record_key_bytes(b, s, "cancelq", s.done())
            extra = start_driver(s, "burst", "--jobs", "200")
            _round_trips(b, s, REALTIME_ROW, 200, lambda: go(extra), s.done)
            if b.profile:
                _profile(b, s, worker.pid, jobs)


def _profile(b: Bench, s: Stack, pid: int, jobs: int) -> None:
    """py-spy on the worker over an untimed burst (sampling slows what it watches)."""
    driver = start_driver(s, "burst", "--jobs", str(jobs))
    before = s.done()
    with profiled(b, pid, enabled=True):
        go(driver)
        wait_until(lambda: s.done() >= before + jobs, 120 + jobs / 10, "the profiled burst")


def run_intake(b: Bench, table: str) -> None:
    """`cancelq bulk` with no worker: rows/s, its start-up (a 1-row file, best of 3) subtracted."""
    rows = b.sizes.intake_rows
    big, small = b.logs / f"rows-{rows}.csv", b.logs / "rows-1.csv"
    for path, n in ((big, rows), (small, 1)):
        if not path.exists():
            write_rows(path, n)
    with stack(b.checkout, b.fakes[0].url, b.logs) as s:

        def timed(path: Path) -> float:
            started = time.perf_counter()
            if s.bulk(path, f"intake-{uuid.uuid4().hex[:8]}").wait(600) != 0:
                raise SystemExit(f"bench: cancelq bulk failed; see {s.logs}/cancelq-bulk.log")
            return time.perf_counter() - started

        start_up = min(timed(small) for _ in range(3))
        seconds = timed(big) - start_up
        b.results.add(table, "cancelq bulk (no worker)", "rows/s", (rows - 1) / max(1e-6, seconds))


def run_fake_alone(b: Bench, latency: int, table: str) -> None:
    """What the fake API does by itself: one aiohttp client process, 256 calls in flight."""
    fake = b.fakes[latency]
    jobs = 4 * b.sizes.script_jobs
    cpu0 = cpu_seconds(fake.process.pid)
    argv = [sys.executable, "-m", "bench.scripts", "--mode", "aiohttp", "--url", fake.url,
            "--jobs", str(jobs)]
    out = subprocess.run(argv, cwd=BENCH_ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    row = f"fake API at {latency} ms, aiohttp client, 256 in flight"
    b.results.add(table, row, "req/s", jobs / result["seconds"])
    b.results.add(table, row, "fake cpu ms/req", 1000 * (cpu_seconds(fake.process.pid) - cpu0)
                  / jobs)
    b.results.add(table, row, "client cpu ms/req", 1000 * result["cpu_seconds"] / jobs)
