"""What listens where (issue 16, item 12): loopback unless an address is given, and the
address printed is the one bound.

`cancelq metrics` and Flower start as real processes; their listening sockets are read from
the kernel (psutil), not from what they print.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from producers.dev.local_redis import free_port
from tests.conftest import ROOT, Simulator, WorkerFactory, stop_process, wait_for, worker_env

pytestmark = pytest.mark.integration

#: Starts `cancelq metrics` with extra arguments and environment: (process, port, first line).
Exporter = Callable[..., tuple[subprocess.Popen[str], int, str]]


def listening(pid: int, port: int) -> set[str]:
    """The local addresses `pid` (or a child) listens on at `port`."""
    process = psutil.Process(pid)
    found: set[str] = set()
    for proc in (process, *process.children(recursive=True)):
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                found.add(conn.laddr.ip)
    return found


def stop(process: subprocess.Popen[str]) -> None:
    stop_process(process, grace=15)


@pytest.fixture
def exporter(redis_url: str) -> Iterator[Exporter]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[str], int, str]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-c", "from producers.cli import main; main()", "metrics",
             "--port", str(port), *args],
            cwd=ROOT, env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", **env},
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        started.append(process)
        assert process.stderr is not None
        return process, port, process.stderr.readline().strip()

    yield start
    for process in started:
        stop(process)


def test_the_exporter_listens_on_loopback_by_default(exporter: Exporter) -> None:
    process, port, said = exporter()
    assert said == f"cancelq metrics: serving http://127.0.0.1:{port}/metrics"
    assert wait_for(lambda: listening(process.pid, port), timeout=20) == {"127.0.0.1"}


@pytest.mark.parametrize(("args", "env"), [
    (("--addr", "0.0.0.0"), {}),
    ((), {"METRICS_ADDRESS": "0.0.0.0"}),
])
def test_the_exporter_listens_where_it_is_told_and_says_so(
    exporter: Exporter, args: tuple[str, ...], env: dict[str, str]
) -> None:
    process, port, said = exporter(*args, **env)
    assert said == f"cancelq metrics: serving http://0.0.0.0:{port}/metrics"
    assert wait_for(lambda: listening(process.pid, port), timeout=20) == {"0.0.0.0"}


def test_a_bad_metrics_address_is_one_line(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from producers.cli import main; main()", "metrics"],
        cwd=ROOT, env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
                       "METRICS_ADDRESS": "0.0.0.0 #all"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("cancelq: configuration error: METRICS_ADDRESS")
    assert done.stderr.count("\n") == 1


# -- Flower --------------------------------------------------------------------------------


def start_flower(redis_url: str, simulator: Simulator, log: Path, port: int,
                 *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in worker_env(redis_url, simulator.url).items()
           if k != "CV_API_KEY" and not k.startswith("FLOWER_")}
    env["FLOWER_BASIC_AUTH"] = "ops:listen-test-pw"
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
             *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )


@pytest.mark.parametrize(("args", "bound", "shown"), [
    ((), {"127.0.0.1"}, "127.0.0.1"),
    (("--address=0.0.0.0",), {"0.0.0.0"}, "0.0.0.0"),
])
def test_flower_listens_on_loopback_unless_told_and_says_where(
    redis_url: str, simulator: Simulator, tmp_path: Path,
    args: tuple[str, ...], bound: set[str], shown: str,
) -> None:
    port = free_port()
    log = tmp_path / "flower.log"
    process = start_flower(redis_url, simulator, log, port, *args)
    try:
        def up() -> set[str]:
            assert process.poll() is None, log.read_text()
            return listening(process.pid, port)

        assert wait_for(up, timeout=40, interval=0.2) == bound
        wait_for(lambda: "Visit me at" in log.read_text(), timeout=20)
        assert f"Visit me at http://{shown}:{port}" in log.read_text()
    finally:
        stop(process)


# -- a worker's own metrics ------------------------------------------------------------------


@pytest.mark.parametrize(("env", "bound"), [({}, "127.0.0.1"), ({"METRICS_ADDRESS": "0.0.0.0"},
                                                                 "0.0.0.0")])
def test_a_workers_metrics_listen_on_loopback_unless_told(
    start_worker: WorkerFactory, env: dict[str, str], bound: str
) -> None:
    port = free_port()
    worker = start_worker(WORKER_METRICS_PORT=port, **env)
    assert wait_for(lambda: listening(worker.process.pid, port), timeout=20) == {bound}
    assert f"metrics of this worker at http://{bound}:{port}/metrics" in worker.log()
