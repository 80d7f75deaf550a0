"""Fixtures: one per real part (Redis, simulator, worker), plus fakeredis for unit tests.

Integration tests never touch a Redis they did not start: the session starts a private
`redis-server` on a free port and flushes only that one between tests. Where no
`redis-server` is installed they fail, saying so: a fault test on fakeredis would prove
nothing (it has no persistence, no real `CLIENT KILL`, no Sentinel).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis

from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from producers.dev.local_redis import LocalRedis, start_redis_server
from simulator.control import SimulatorControl, spawn_simulator

ROOT = Path(__file__).resolve().parent.parent
#: A key that must never show up anywhere: logs, Redis, Flower, exceptions.
API_KEY = "sk-test-NEVER-LEAK-7f3c9a1e2b4d"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment; tests start from none of ours."""
    for name in list(os.environ):
        if name.startswith(("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_", "REDIS_", "WEB_")):
            monkeypatch.delenv(name, raising=False)


# -- unit: fakeredis ----------------------------------------------------------------------


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.flushall()


@pytest.fixture
def fake_store(fake_redis: fakeredis.FakeRedis) -> AuditStore:
    return AuditStore(fake_redis, Keys("t"))


# -- integration: real Redis --------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("integration tests need `redis-server` on PATH (apt-get install redis-server)")
    server = start_redis_server()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()  # ours: started by this session
    yield redis_server.url
    try:
        client.flushall()
    except redis.RedisError:
        pass
    client.close()


@pytest.fixture
def real_store(redis_url: str) -> AuditStore:
    return AuditStore(redis.Redis.from_url(redis_url, decode_responses=True))


# -- integration: the simulator -----------------------------------------------------------


@dataclass
class Simulator:
    url: str
    control: SimulatorControl
    process: subprocess.Popen[str]


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[Simulator]:
    process, url = spawn_simulator("--api-key", API_KEY, cwd=str(ROOT))
    control = SimulatorControl(url)
    control.wait_ready(10)
    yield Simulator(url, control, process)
    process.terminate()
    process.wait(10)


@pytest.fixture
def simulator(simulator_process: Simulator) -> Simulator:
    simulator_process.control.reset(state=True)
    return simulator_process


# -- integration: real worker processes ---------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and any children)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


WorkerFactory = Callable[..., WorkerProcess]


def worker_env(redis_url: str, simulator_url: str, **overrides: Any) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CANCEL_", "CARE360_", "CV_API_KEY", "CELERY_", "REDIS_", "WEB_"))
    }
    env.update(
        REDIS_URL=redis_url,
        CV_API_KEY=API_KEY,
        CARE360_BASE_URL=simulator_url,
        CANCEL_RETRY_BASE_SECONDS="0.05",
        CANCEL_RETRY_MAX_SECONDS="0.3",
        CARE360_TIMEOUT_SECONDS="2",
        # a lost attempt is reaped within seconds, not the 30 s default
        CANCEL_LEASE_SECONDS="3",
        RETRY_SCHEDULER_INTERVAL_SECONDS="0.1",
        PYTHONUNBUFFERED="1",
        # one process per worker: tests count, kill and read the logs of the process they start
        WORKER_PROCESSES="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def spawn_worker(
    env: dict[str, str], log_path: Path, name: str, *args: str, ready_timeout: float = 30.0
) -> WorkerProcess:
    """`celery -A worker worker` as a real process, once it says it is ready."""
    handle = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info",
         "-n", f"{name}@%h", "--without-mingle", "--without-gossip", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    worker = WorkerProcess(process, log_path, env)
    deadline = time.monotonic() + ready_timeout
    while " ready." not in worker.log():
        if process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()}")
        if time.monotonic() > deadline:
            worker.kill()
            raise AssertionError(f"worker not ready in {ready_timeout}s:\n{worker.log()}")
        time.sleep(0.1)
    return worker


@pytest.fixture
def start_worker(
    redis_url: str, simulator: Simulator, tmp_path: Path
) -> Iterator[WorkerFactory]:
    """Start `celery -A worker worker` as a real process; extra env as keyword arguments."""
    started: list[WorkerProcess] = []

    def start(*args: str, ready_timeout: float = 30.0, **env_overrides: Any) -> WorkerProcess:
        env = worker_env(redis_url, simulator.url, **env_overrides)
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = spawn_worker(env, log_path, f"w{len(started)}", *args,
                              ready_timeout=ready_timeout)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail with the last value when time is up."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value: {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, and SIGKILL to its whole group if it has not ended within `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_for_http(process: subprocess.Popen[Any], url: str, log: Path, timeout: float = 30) -> None:
    """Poll `url` until it answers 200, failing with the process's log if it exits first."""
    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited:\n{log.read_text(errors='replace')}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=timeout, interval=0.2)
