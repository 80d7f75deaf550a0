"""The processes a benchmark runs: a private Redis, the checkout's worker and producers.

The product under test is a *checkout* (`--checkout`, default: this tree): its worker and its
producers run as child processes with `PYTHONPATH` and the working directory at that
checkout, so one bench measures any commit. The bench talks to the product only through
what a user has: the `cancelq` command (read from the checkout's pyproject.toml), the
`enqueue_cancellation()` function (bench/drivers/realtime.py), the worker command, and the
counters hash in Redis (`{KEY_PREFIX}:stats`, documented in cancelq/store/keys.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import redis

from producers.dev.local_redis import start_redis_server

BENCH_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
STATS_KEY = "c360:stats"
PRODUCT_VARIABLES = ("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_", "REDIS_", "WORKER_",
                     "KEY_PREFIX", "PYTHONPATH", "CLEANUP_", "FLOWER_", "AUDIT_")


@dataclass(frozen=True)
class Checkout:
    """The tree whose worker and producers are measured."""

    root: Path

    def env(self, redis_url: str, api_url: str, **extra: str) -> dict[str, str]:
        """The environment of a product process: nothing inherited that could change it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRODUCT_VARIABLES)}
        env.update(PYTHONPATH=str(self.root), REDIS_URL=redis_url, CV_API_KEY=API_KEY,
                   CARE360_BASE_URL=api_url, CARE360_RATE_LIMIT="0",
                   CARE360_ALLOW_INSECURE="1")
        env.update(extra)
        return env

    def cancelq_argv(self) -> list[str]:
        """`cancelq` as the checkout defines it (its [project.scripts] entry point)."""
        project = tomllib.loads((self.root / "pyproject.toml").read_text())["project"]
        module, _, func = project["scripts"]["cancelq"].partition(":")
        code = f"import sys; sys.argv[0] = 'cancelq'; from {module} import {func}; {func}()"
        return [sys.executable, "-c", code]

    def describe(self) -> str:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(self.root), *args], capture_output=True,
                                  text=True).stdout.strip()
        dirty = " (with uncommitted changes)" if git("status", "--porcelain") else ""
        return f"{self.root} at {git('rev-parse', '--short', 'HEAD')}{dirty}"


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children."""
    total = 0.0
    for proc in tree(pid):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(pid: int) -> float:
    return float(sum(p.memory_info().rss for p in tree(pid))) / 2**20


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> float:
    """Poll until true; returns the time.perf_counter() when it was first seen true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter()


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Stack:
    """One private redis-server, and the product processes started against it."""

    checkout: Checkout
    api_url: str
    logs: Path
    redis_url: str = ""
    client: redis.Redis = field(init=False)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    reads: int = 0
    """Commands the bench itself sent while polling (subtracted from commands per job)."""

    def env(self, **extra: str) -> dict[str, str]:
        return self.checkout.env(self.redis_url, self.api_url, **extra)

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None,
              **kwargs: object) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        options: dict[str, Any] = {"cwd": self.checkout.root, "stdout": log, "stderr": log,
                                   **kwargs}
        process: subprocess.Popen[bytes] = subprocess.Popen(argv, env=env or self.env(),
                                                            **options)
        self.processes.append(process)
        return process

    def start_worker(self, app: str = "worker", *flags: str,
                     **env: str) -> subprocess.Popen[bytes]:
        """`celery -A worker worker` with default flags (the command the README gives)."""
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", *flags]
        return self.spawn(argv, f"worker-{app}", self.env(**env))

    def done(self, run_id: str | None = None) -> int:
        """Jobs settled or dead, from the product's counters (of one run, or all)."""
        self.reads += 1
        key = f"c360:run:{run_id}:stats" if run_id else STATS_KEY
        settled, dead = self.client.hmget(key, "state:settled", "state:dead")
        return int(settled or 0) + int(dead or 0)

    def counter(self, name: str) -> int:
        return int(self.client.hget(STATS_KEY, name) or 0)

    def bulk(self, path: Path, run_id: str) -> subprocess.Popen[bytes]:
        argv = [*self.checkout.cancelq_argv(), "bulk", str(path), "--run-id", run_id, "--json"]
        return self.spawn(argv, "cancelq-bulk")

    def warm_up(self, worker: subprocess.Popen[bytes], rows: int = 200) -> None:
        """Start-up, imports, pools and thread stacks, before anything is timed."""
        path = self.logs / f"warm-{rows}.csv"
        write_rows(path, rows)
        before = self.done()
        self.bulk(path, f"warm-{uuid.uuid4().hex[:8]}").wait(120)

        def warmed() -> bool:
            if worker.poll() is not None:
                raise SystemExit(f"bench: the worker exited; see {self.logs}")
            return self.done() >= before + rows

        wait_until(warmed, 180, "the worker to settle its warm-up jobs")


@contextmanager
def stack(checkout: Checkout, api_url: str, logs: Path) -> Iterator[Stack]:
    """A fresh private redis-server (never 127.0.0.1:6379), torn down with its processes."""
    server = start_redis_server()
    result = Stack(checkout, api_url, logs, server.url)
    result.client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield result
    finally:
        for process in reversed(result.processes):
            stop(process)
        result.client.close()
        server.stop()


def write_rows(path: Path, n: int) -> None:
    """A CSV of `n` distinct, valid rows for `cancelq bulk`."""
    with path.open("w") as out:
        out.write("case_id,event_id,reason\n")
        for _ in range(n):
            out.write(f"{uuid.uuid4()},{uuid.uuid4()},bench\n")


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    info = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
