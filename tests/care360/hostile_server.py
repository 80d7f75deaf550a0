"""A real HTTP server on 127.0.0.1 answering the cancel endpoint the way a hostile or broken
peer would: compressed bombs, and answers that drip in a byte at a time.

Stdlib only (one thread per connection), so that both clients (the sync `Care360Client`
and the fan-out's aiohttp) are tested against the same bytes on a real socket. The case id
of the request picks the answer:

- `bomb-stacked`: 200, `Content-Encoding: gzip, gzip`, a few hundred bytes that decode
  (twice) into `BOMB_BYTES` zeros;
- `bomb`: 200, `Content-Encoding: gzip`, under 64 KiB that decode into `BOMB_BYTES // 2`;
- `drip`: 200 and a body that never ends, one byte every `DRIP_SECONDS` (each byte well
  within any read timeout), until the client leaves; `drip-head` drips the headers instead;
- anything else: the documented success.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOMB_BYTES = 100 * 1024 * 1024
DRIP_SECONDS = 0.2
OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)


@cache
def bombs() -> tuple[bytes, bytes]:
    """(gzip of gzip of BOMB_BYTES zeros, gzip of BOMB_BYTES // 2 zeros), built once."""
    once = _gzip_zeros(BOMB_BYTES)
    return gzip.compress(once, 9), _gzip_zeros(BOMB_BYTES // 2)


def _gzip_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + packer.flush()


@dataclass
class Hostile:
    """What the server saw: requests by case id, and drips that ended (the client left)."""

    url: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    drips_ended: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        case = self.path.rsplit("/", 1)[1]
        hits = self.server.state.hits
        hits[case] = hits.get(case, 0) + 1
        stacked, single = bombs()
        if case == "bomb-stacked":
            self._send(stacked, "gzip, gzip")
        elif case == "bomb":
            self._send(single, "gzip")
        elif case in ("drip", "drip-head"):
            self._drip(head=case == "drip-head")
        else:
            self._send(OK, None)

    def _send(self, body: bytes, encoding: str | None) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if encoding:
            self.send_header("content-encoding", encoding)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, *, head: bool) -> None:
        """One byte at a time, forever: of the body, or (head) of an endless header."""
        try:
            if head:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nx-drip: ")
            else:
                self.send_response(200)
                self.send_header("content-length", "100000000")
                self.end_headers()
            while True:
                self.wfile.write(b"a" if head else b" ")
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
        except OSError:  # the client left: what the test waits for
            self.server.state.drips_ended.set()
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: Hostile) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def hostile_server() -> Iterator[Hostile]:
    state = Hostile()
    server = _Server(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
