"""cancelq/store/replication.py: when a write on a Sentinel primary counts as safe.

The failover itself is tested for real in tests/integration/test_faults.py (a primary, a
replica and a sentinel); these are the decisions, with a stand-in for redis-py's Sentinel
pool (only its two members that the module reads)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from cancelq.store.replication import PrimaryMoved, Replication


class Pool:
    """redis-py's SentinelConnectionPool as the module sees it: who it wrote to, who is next."""

    def __init__(self, answers: list[tuple[str, int]]) -> None:
        self.master_address: tuple[str, int] | None = answers[0]
        self.answers = answers

    def get_master_address(self) -> tuple[str, int]:
        self.master_address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return self.master_address


def replication(pool: Any) -> tuple[Replication, list[float]]:
    client = fakeredis.FakeRedis()
    client.connection_pool = pool
    slept: list[float] = []
    return Replication(client, sleep=slept.append), slept


def test_no_sentinel_adds_nothing() -> None:
    plain = Replication(fakeredis.FakeRedis())
    assert not plain.active
    assert plain.confirm(["reply"], waited=False) == ["reply"]


def test_a_replica_acknowledged_it_is_safe() -> None:
    rep, slept = replication(Pool([("a", 1)]))
    assert rep.confirm(["w1", "w2", 1], waited=True) == ["w1", "w2"]
    assert slept == []


def test_no_acknowledgement_and_a_new_primary_is_named_later_raises() -> None:
    rep, slept = replication(Pool([("a", 1), ("a", 1), ("a", 1), ("b", 2)]))
    with pytest.raises(PrimaryMoved):
        rep.check(0)
    assert slept  # it watched Sentinel a while before the new primary was named


def test_a_primary_alone_is_safe_and_not_asked_to_wait_again() -> None:
    rep, slept = replication(Pool([("a", 1)]))
    rep.check(0)
    assert sum(slept) >= 1.0
    pipe = fakeredis.FakeRedis().pipeline()
    assert rep.add_wait(pipe) is False  # alone: no WAIT for a while
