"""`cancelq.store.codec`: Redis replies decoded the same way from a decoding or a raw client."""

from __future__ import annotations

import math

import fakeredis
import pytest

from cancelq.store.codec import (
    decode_counters,
    decode_float,
    decode_hash,
    decode_pttl,
    decode_text,
)


@pytest.fixture(params=[True, False], ids=["decoded", "raw"])
def client(request: pytest.FixtureRequest) -> fakeredis.FakeRedis:
    """One client that decodes replies to str and one that hands back bytes."""
    return fakeredis.FakeRedis(decode_responses=request.param)


def test_text_and_hash_read_the_same_from_either_client(client: fakeredis.FakeRedis) -> None:
    client.set("k", "café")
    client.hset("h", mapping={"state": "settled", "n": "3"})
    assert decode_text(client.get("k")) == "café"
    assert decode_hash(client.hgetall("h")) == {"state": "settled", "n": "3"}
    assert decode_text(7) == "7"


def test_counters_are_ints_by_text_name(client: fakeredis.FakeRedis) -> None:
    client.hincrby("c", "jobs", 5)
    client.hincrby("c", "outcome:cancelled", -1)
    assert decode_counters(client.hgetall("c")) == {"jobs": 5, "outcome:cancelled": -1}
    assert decode_counters(client.hgetall("missing")) == {}


def test_float_field_empty_or_missing_is_none() -> None:
    assert decode_float("1712.25") == 1712.25
    assert decode_float("0") == 0.0
    assert decode_float("") is None
    assert decode_float(None) is None


def test_pttl_missing_key_none_no_expiry_infinite_else_seconds(
    client: fakeredis.FakeRedis,
) -> None:
    assert decode_pttl(client.pttl("gone")) is None
    client.set("forever", "1")
    assert decode_pttl(client.pttl("forever")) == math.inf
    client.set("soon", "1", px=30_000)
    left = decode_pttl(client.pttl("soon"))
    assert left is not None and 0 < left <= 30.0
    assert decode_pttl(b"1500") == 1.5
