"""A Redis to run against when none is configured: for the demo and the test suite.

In order: the server at the given URL if it answers; else a private `redis-server` on a
free port (a real Redis, in a temporary directory, gone when stopped); else an embedded
fakeredis TCP server in this process (slow, ~300 tasks/s with Nagle off, but enough to show
the pipeline on a machine with nothing installed).
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis

Kind = Literal["external", "redis-server", "embedded"]


@dataclass
class LocalRedis:
    url: str
    kind: Kind
    port: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _server: socketserver.BaseServer | None = field(default=None, repr=False)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def owned(self) -> bool:
        """True when we started it, so it is ours to flush, restart and stop."""
        return self.kind != "external"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def kill(self) -> None:
        """SIGKILL the private server (fault tests); `restart` brings it back on the same port."""
        if self._process is None:
            raise RuntimeError("only a private redis-server can be killed")
        self._process.kill()
        self._process.wait()

    def restart(self) -> None:
        if self.kind != "redis-server" or self.port is None or self._tmpdir is None:
            raise RuntimeError("only a private redis-server can be restarted")
        self._process = _spawn_redis_server(self.port, Path(self._tmpdir.name))

    def __enter__(self) -> LocalRedis:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_redis(url: str | None, *, prefer_private: bool = False) -> LocalRedis:
    """The Redis at `url` if it answers (unless `prefer_private`), else one we start."""
    if url and not prefer_private and answers(url):
        return LocalRedis(url=url, kind="external")
    if shutil.which("redis-server"):
        return start_redis_server()
    return start_embedded()


def start_redis_server(port: int | None = None) -> LocalRedis:
    port = port or free_port()
    tmpdir = tempfile.TemporaryDirectory(prefix="cancelq-redis-")
    process = _spawn_redis_server(port, Path(tmpdir.name))
    return LocalRedis(
        url=f"redis://127.0.0.1:{port}/0",
        kind="redis-server",
        port=port,
        _process=process,
        _tmpdir=tmpdir,
    )


def _spawn_redis_server(port: int, directory: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--maxmemory-policy", "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not answers(url, timeout=0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return process


def start_embedded() -> LocalRedis:
    from fakeredis import TcpFakeServer

    class _NoDelayServer(TcpFakeServer):
        """fakeredis writes each reply with its own send(); with Nagle on, pipelined
        replies stall ~40 ms on delayed ACKs (11 tasks/s). TCP_NODELAY fixes that."""

        def get_request(self) -> tuple[socket.socket, Any]:
            conn, addr = super().get_request()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, addr

    port = free_port()
    server = _NoDelayServer(("127.0.0.1", port), server_type="redis")
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="embedded-redis").start()
    return LocalRedis(url=f"redis://127.0.0.1:{port}/0", kind="embedded", port=port, _server=server)
