"""Reading an answer's body, bounded twice: the bytes taken from the socket, and the bytes
decoded from them.

httpx decodes a `Content-Encoding` a whole chunk at a time, so a cap applied to what it
yields comes too late: 333 bytes sent as `gzip, gzip` became one 100 MB chunk before the
cap saw it. Here the body is read raw and decoded chunk by chunk, zlib being told how much
it may produce (`max_length`): at most `BODY_LIMIT` raw bytes are read and at most
`BODY_LIMIT` decoded bytes ever exist, whatever the answer.

Accepted encodings, each alone: none (`identity`), `gzip` (`x-gzip`), `deflate` (zlib or
raw, as httpx took it); the clients ask for exactly these (`ACCEPT_ENCODING`). Anything
else (stacked encodings, `br`, one we do not know) is refused and its body not read.

What a refused or oversized body means is what an oversized body has always meant here:
the body is cut (refused: empty), it parses as no JSON, and the status alone decides
(`cancelq.care360.classify`): a 2xx is a transient answer ("2xx without the documented
success body", retried), a 5xx transient, a 400 `invalid_request` with the note kept in the
raw body for a human. No new kind of outcome. A body that does not decode as its encoding
says is a failed exchange, as it was under httpx (`httpx.DecodingError`, mapped by
`client.FAILURES` to a retryable `TransportError`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cancelq.core.errors import Care360Timeout

#: Bytes of an answer ever read, raw or decoded: the spec's bodies are under 200 bytes.
BODY_LIMIT = 64 * 1024
#: What the clients say they accept: what `BoundedBody` can decode.
ACCEPT_ENCODING = "gzip, deflate"
#: zlib's window bits for each accepted encoding (identity: none).
WINDOW_BITS: dict[str, int] = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
                               "deflate": zlib.MAX_WBITS}
#: Characters of a refused `Content-Encoding` quoted in the note.
NOTE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Body:
    """What was read of a body: up to the cap, decoded; or why it was not read."""

    content: bytes
    refused: str | None = None

    def note(self) -> str | None:
        """The line kept for the audit when the body was not read."""
        if self.refused is None:
            return None
        return f"(body not read: Content-Encoding {self.refused!r} is not accepted)"


def encoding_of(headers: Mapping[str, str]) -> str | None:
    """The one accepted encoding the answer names ("identity" for none), or None."""
    names = [part.strip().lower() for part in headers.get("content-encoding", "").split(",")]
    names = [name for name in names if name and name != "identity"]
    if not names:
        return "identity"
    if len(names) == 1 and names[0] in WINDOW_BITS:
        return names[0]
    return None


@dataclass(slots=True)
class BoundedBody:
    """One body being read: raw chunks in, decoded bytes kept, both capped at `limit`."""

    encoding: str
    limit: int = BODY_LIMIT
    deadline: float | None = None
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    raw: int = 0
    _zlib: Any = None

    def __post_init__(self) -> None:
        if self.encoding in WINDOW_BITS:
            self._zlib = zlib.decompressobj(WINDOW_BITS[self.encoding])

    def feed(self, chunk: bytes) -> bool:
        """Take one raw chunk; True once either cap is reached (stop reading).

        Raises `Care360Timeout` past `deadline` (a body dripping in, each piece within the
        read timeout), and `httpx.DecodingError` for a body that does not decode.
        """
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Care360Timeout("timed out (the answer outlasted the call's deadline)")
        self.raw += len(chunk)
        data = chunk if self._zlib is None else self._decode(chunk)
        self.parts.append(data)
        self.size += len(data)
        return self.size >= self.limit or self.raw >= self.limit

    def finish(self) -> Body:
        """The body read: what is left in zlib's buffer only if its input was all taken."""
        if self._zlib is not None and self.size < self.limit and not self._zlib.unconsumed_tail:
            self.parts.append(self._zlib.flush()[: self.limit - self.size])
        return Body(b"".join(self.parts)[: self.limit])

    def _decode(self, chunk: bytes) -> bytes:
        try:
            out: bytes = self._zlib.decompress(chunk, self.limit - self.size)
            return out
        except zlib.error:
            if self.encoding == "deflate" and self.raw == len(chunk):
                # raw deflate (no zlib header), as some servers send it and httpx accepts
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self.encoding = "raw-deflate"
                return self._decode(chunk)
        raise httpx.DecodingError("the body does not decode as its Content-Encoding says")


def _start(response: httpx.Response, limit: int, deadline: float | None
           ) -> Body | BoundedBody:
    """The body at once when there is nothing to read; else an empty `BoundedBody`."""
    encoding = encoding_of(response.headers)
    if encoding is None:
        return Body(b"", refused=response.headers.get("content-encoding", "")[:NOTE_LIMIT])
    if response.is_stream_consumed:  # in memory already (a mock transport): decoded by httpx
        return Body(response.content[:limit])
    return BoundedBody(encoding, limit, deadline)


def read_body(response: httpx.Response, limit: int = BODY_LIMIT,
              deadline: float | None = None) -> Body:
    """The first `limit` decoded bytes of a streamed answer; reads no more than `limit` raw."""
    body = _start(response, limit, deadline)
    if isinstance(body, Body):
        return body
    return _fill(body, response.iter_raw())


def _fill(body: BoundedBody, chunks: Iterable[bytes]) -> Body:
    for chunk in chunks:
        if body.feed(chunk):
            break
    return body.finish()


async def aread_body(response: httpx.Response, limit: int = BODY_LIMIT,
                     deadline: float | None = None) -> Body:
    """`read_body` for an async answer; closes the raw iterator at once when it stops
    early, rather than leaving it to the loop's async-generator finaliser."""
    body = _start(response, limit, deadline)
    if isinstance(body, Body):
        return body
    chunks: AsyncIterator[bytes] = response.aiter_raw()
    try:
        async for chunk in chunks:
            if body.feed(chunk):
                break
    finally:
        aclose: Callable[[], Awaitable[None]] | None = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return body.finish()
