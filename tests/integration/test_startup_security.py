"""Issue 11, real processes: the worker says which Care360 host it calls (never the key), and
Flower started from another directory still demands its login."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from producers.dev.local_redis import free_port
from tests.conftest import (
    API_KEY,
    ROOT,
    Simulator,
    WorkerFactory,
    stop_process,
    wait_for_http,
    worker_env,
)

pytestmark = pytest.mark.integration


def test_the_worker_logs_the_care360_host_not_the_key(
    start_worker: WorkerFactory, simulator: Simulator
) -> None:
    worker = start_worker()
    log = worker.log()
    host = simulator.url.rstrip("/")
    assert f"cancelq worker: calling Care360 at {host}" in log
    assert API_KEY not in log


def test_flower_started_elsewhere_still_requires_its_login(
    redis_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in worker_env(redis_url, simulator.url).items()
           if not k.startswith("FLOWER_")}
    env.update(PYTHONPATH=str(ROOT), FLOWER_BASIC_AUTH="ops:pw-elsewhere")
    env.pop("CV_API_KEY")
    log = tmp_path / "flower.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
             "--address=127.0.0.1"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for_http(process, f"{url}/healthcheck", log)
        for path in ("/", "/tasks", "/tasks/datatable", "/api/workers"):
            assert httpx.get(url + path, timeout=5).status_code == 401, path
        assert httpx.get(url + "/tasks", auth=("ops", "pw-elsewhere"), timeout=5).status_code \
            == 200
    finally:
        stop_process(process)
