"""Start, steer and stop the fake Care360 API (bench/fake_api.py) from the bench.

Only httpx here, so the bench's other modules import without aiohttp; the fake itself runs
in a child process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FakeApi:
    """A running fake in a child process."""

    url: str
    process: subprocess.Popen[bytes]

    def configure(self, **changes: float) -> None:
        httpx.post(f"{self.url}/_bench/config", json=changes, timeout=10).raise_for_status()

    def calls(self) -> int:
        return int(httpx.get(f"{self.url}/_bench/stats", timeout=10).json()["calls"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spawn_fake_api(latency_ms: float) -> FakeApi:
    """Start the fake on a free port and wait until it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_api", "--port", str(port),
         "--latency-ms", str(latency_ms)],
        cwd=BENCH_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    fake = FakeApi(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 20
    while True:
        try:
            fake.calls()
            return fake
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                fake.stop()
                raise RuntimeError("the fake Care360 API did not start") from None
            time.sleep(0.05)
