"""`python -m bench`: every throughput scenario of issue 9 beside its baselines, in one run.

Starts its own redis-server per measurement (a free port; 127.0.0.1:6379 is never touched),
two fake Care360 APIs (0 and 50 ms), the checkout's worker and producers, the baseline
scripts and a plain Celery app; writes docs/benchmarks.md and docs/benchmarks-latency.png.
Logs of every process go to a temporary directory, printed at the start.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.fake_control import spawn_fake_api
from bench.footprint import run_rss
from bench.harness import BENCH_ROOT, Checkout
from bench.latency import plot, run_latency
from bench.report import CPU, FAKE, INTAKE, THROUGHPUT, render
from bench.results import Results
from bench.suite import FULL, QUICK, Bench
from bench.throughput import (
    run_autoretry,
    run_bulk,
    run_fake_alone,
    run_intake,
    run_realtime,
    run_script,
)

SCENARIOS = ("fake", "throughput", "cpu", "latency", "intake", "rss")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one repeat: a few minutes")
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 3; 1 with "
                                                    "--quick); the report shows medians")
    parser.add_argument("--checkout", type=Path, default=BENCH_ROOT,
                        help="the tree whose worker and producers are measured (default: this)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker during the 0 ms real-time run")
    parser.add_argument("--out", type=Path, default=BENCH_ROOT / "docs" / "benchmarks.md",
                        help="the report (the PNG goes beside it)")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    return args


def repeat_steps(b: Bench, only: set[str], last: bool) -> list[tuple[str, Callable[[], None]]]:
    """One repeat's measurements, baselines beside the product, in a fixed order."""
    steps: list[tuple[str, Callable[[], None]]] = []
    if "throughput" in only:
        steps += [
            ("script, one client per thread, 50 ms", lambda: run_script(b, "threads", 50,
                                                                        THROUGHPUT)),
            ("script, one shared client, 50 ms", lambda: run_script(b, "shared", 50, THROUGHPUT)),
            ("plain Celery autoretry, 50 ms", lambda: run_autoretry(b, 50, THROUGHPUT)),
            ("cancelq bulk path, 50 ms", lambda: run_bulk(b, THROUGHPUT, footprint=last)),
            ("cancelq real-time path, 50 ms", lambda: run_realtime(b, 50, THROUGHPUT)),
        ]
    if "cpu" in only:
        steps += [
            ("script, one client per thread, 0 ms", lambda: run_script(b, "threads", 0, CPU)),
            ("script, one shared client, 0 ms", lambda: run_script(b, "shared", 0, CPU)),
            ("plain Celery autoretry, 0 ms", lambda: run_autoretry(b, 0, CPU, footprint=last)),
            ("cancelq real-time path, 0 ms", lambda: run_realtime(b, 0, CPU, footprint=last)),
        ]
    if "latency" in only:
        steps.append(("real-time latency during a bulk drain", lambda: run_latency(b)))
    if "intake" in only:
        steps.append(("bulk intake", lambda: run_intake(b, INTAKE)))
    return steps


def run_all(b: Bench, only: set[str], repeats: int) -> None:
    started = time.monotonic()

    def step(name: str, run: Callable[[], None]) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {name}", flush=True)
        run()

    if "fake" in only:
        for latency in (0, 50):
            step(f"fake API alone, {latency} ms", partial(run_fake_alone, b, latency, FAKE))
    for repeat in range(repeats):
        print(f"-- repeat {repeat + 1} of {repeats}", flush=True)
        for name, run in repeat_steps(b, only, last=repeat == repeats - 1):
            step(name, run)
    if "rss" in only:
        step("worker RSS with jobs queued and in retry", lambda: run_rss(b))


def main() -> None:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    logs = Path(tempfile.mkdtemp(prefix="cancelq-bench-"))
    print(f"bench: logs in {logs}", flush=True)
    load_before = os.getloadavg()
    fakes = {0: spawn_fake_api(0), 50: spawn_fake_api(50)}
    b = Bench(Checkout(args.checkout.resolve()), logs, sizes, Results(), fakes, args.profile)
    try:
        run_all(b, set(args.only.split(",")), repeats)
    finally:
        for fake in fakes.values():
            fake.stop()
    mode = "quick" if args.quick else "full"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(b, load_before, f"{mode} run, {repeats} repeat(s)"))
    series = b.results.details.get("latency:series")
    if series:
        plot(series, sizes.latency_rows, args.out.with_name("benchmarks-latency.png"))
    print(f"bench: wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
