"""Both clients against a real server that answers with compressed bombs and dripping
bytes (`hostile_server`): the body cap holds before decompression, not after it, and every
call ends at its total deadline however slowly its answer comes.

Memory is measured with `tracemalloc` (every bytes object the decoder makes is traced):
before the cap was moved below decoding, the stacked bomb decoded into one 100 MB chunk.
"""

from __future__ import annotations

import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from cancelq.care360.body import BODY_LIMIT, BoundedBody, encoding_of
from cancelq.care360.classify import classify
from cancelq.care360.client import Answer, Care360Client
from cancelq.care360.fanout import FanOut
from cancelq.core.errors import Care360Timeout, TransientResponse
from tests.care360.hostile_server import BOMB_BYTES, Hostile, bombs, hostile_server
from tests.conftest import API_KEY

#: Far above what a capped read allocates (a few 64 KiB buffers), far below one bomb.
MEMORY_BOUND = 8 * 1024 * 1024
#: A hung call is a failed test, not a hung suite.
GUARD_SECONDS = 30.0


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    bombs()  # built before any measurement
    with hostile_server() as server:
        yield server


def sync_client(url: str, timeout: float = 10.0) -> Care360Client:
    return Care360Client(url, SecretStr(API_KEY), timeout_seconds=timeout)


def fan_out(url: str, timeout: float = 10.0) -> FanOut:
    return FanOut(url, SecretStr(API_KEY), timeout_seconds=timeout, max_in_flight=8)


def call_one(kind: str, url: str, case: str, timeout: float = 10.0) -> Answer:
    """One call by the sync client or the fan-out, closed after."""
    if kind == "sync":
        client = sync_client(url, timeout)
        try:
            return client.cancel(case, "e")
        finally:
            client.close()
    fanout = fan_out(url, timeout)
    try:
        return fanout.cancel(case, "e")
    finally:
        fanout.close()


def peak_bytes(work: Callable[[], Any]) -> tuple[Any, int]:
    """`work()`'s result and the most memory traced while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def guarded(work: Callable[[], Any]) -> Any:
    """`work()` in a thread: its result or exception, or a failure if it never ends."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    assert not thread.is_alive(), f"the call was still running after {GUARD_SECONDS}s"
    return out[0]


KINDS = ["sync", "fanout"]


# -- the body cap, below decompression --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_stacked_gzip_bomb_is_refused_unread(kind: str, hostile: Hostile) -> None:
    """`gzip, gzip` is not an encoding we accept: nothing of it is decoded, and the answer
    is judged as an unreadable body is: a 200 without the success body is transient."""
    answer, peak = peak_bytes(lambda: call_one(kind, hostile.url, "bomb-stacked"))
    assert peak < MEMORY_BOUND, f"{peak} bytes traced decoding 331 bytes"
    assert answer.status == 200 and answer.success is None
    assert answer.raw_body == "(body not read: Content-Encoding 'gzip, gzip' is not accepted)"
    with pytest.raises(TransientResponse):
        classify(answer)


@pytest.mark.parametrize("kind", KINDS)
def test_a_gzip_bomb_is_decoded_only_up_to_the_cap(kind: str, hostile: Hostile) -> None:
    answer, peak = peak_bytes(lambda: call_one(kind, hostile.url, "bomb"))
    assert peak < MEMORY_BOUND, f"{peak} bytes traced decoding a {BOMB_BYTES // 2} byte bomb"
    assert answer.status == 200 and answer.success is None
    assert answer.raw_body == "\x00" * len(answer.raw_body) and answer.raw_body


def test_decoding_never_makes_more_than_the_cap() -> None:
    """Chunk by chunk: one raw chunk of bomb decodes into at most what the cap has room for."""
    _, single = bombs()
    body = BoundedBody("gzip")
    for start in range(0, len(single), 16_384):
        full = body.feed(single[start:start + 16_384])
        assert body.size <= BODY_LIMIT
        if full:
            break
    assert body.size == BODY_LIMIT
    assert len(body.finish().content) == BODY_LIMIT


def test_deflate_with_and_without_its_zlib_header_is_read() -> None:
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
        body = BoundedBody("deflate")
        body.feed(packer.compress(b'{"a":1}') + packer.flush())
        assert body.finish().content == b'{"a":1}'


@pytest.mark.parametrize(
    ("header", "accepted"),
    [("", "identity"), ("identity", "identity"), ("GZIP", "gzip"), ("x-gzip", "x-gzip"),
     ("deflate", "deflate"), ("gzip, gzip", None), ("gzip,identity,gzip", None),
     ("br", None), ("zstd", None), ("compress", None), ("gzip, deflate", None)],
)
def test_only_one_known_encoding_is_accepted(header: str, accepted: str | None) -> None:
    assert encoding_of({"content-encoding": header} if header else {}) == accepted


# -- the total deadline ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_dripping_body_ends_as_a_timeout(kind: str, hostile: Hostile) -> None:
    """A byte every 0.2 s meets no read timeout; the deadline (1 s) ends the call."""
    hostile.drips_ended.clear()
    got = guarded(lambda: call_one(kind, hostile.url, "drip", timeout=1.0))
    assert isinstance(got, Care360Timeout), got
    assert hostile.drips_ended.wait(GUARD_SECONDS)  # the connection was dropped


def test_dripping_headers_end_as_a_timeout_on_the_fan_out(hostile: Hostile) -> None:
    got = guarded(lambda: call_one("fanout", hostile.url, "drip-head", timeout=1.0))
    assert isinstance(got, Care360Timeout), got
    assert "deadline" in str(got)


def test_a_dripping_call_in_a_batch_ends_alone(hostile: Hostile) -> None:
    fanout = fan_out(hostile.url, timeout=1.0)
    try:
        timed = guarded(lambda: fanout.cancel_many([("drip", "1"), ("ok", "2")]))
        assert fanout.oldest_call_age() is None  # nothing left in flight
    finally:
        fanout.close()
    dripped, fine = (t.result for t in timed)
    assert isinstance(dripped, Care360Timeout)
    assert isinstance(fine, Answer) and fine.success is True
