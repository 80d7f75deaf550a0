"""Issue 11: `celery inspect conf` (Flower's worker Config tab) against a worker whose Redis
has a password: the password is nowhere in the answer, nor in the worker's log."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers.dev.local_redis import free_port
from tests.conftest import ROOT, Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration
PASSWORD = "pw-inspect-NEVER-SHOWN"


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"

    def up() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    try:
        wait_for(up, timeout=20, interval=0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_inspect_conf_masks_the_redis_password(
    password_redis: str, simulator: Simulator, start_worker: WorkerFactory
) -> None:
    worker = start_worker(REDIS_URL=password_redis)
    node = f"w0@{socket.gethostname()}"

    def conf() -> str | None:
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "worker", "inspect", "conf", "-d", node,
             "--timeout", "5"],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env=worker.env,
        )
        return done.stdout if "broker_url" in done.stdout else None

    answer = wait_for(conf, timeout=60, interval=1)
    assert PASSWORD not in answer
    assert "redis://:***@127.0.0.1" in answer
    assert PASSWORD not in worker.log()
