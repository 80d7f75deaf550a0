"""`cancelq.pipeline.lease.LeaseKeeper`: one thread renews every attempt the process holds."""

from __future__ import annotations

import time

import fakeredis

from cancelq.core.contract import CancelRequest
from cancelq.pipeline.lease import LeaseKeeper, new_owner
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from tests.conftest import wait_for

REQUEST = CancelRequest.parse(case_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                              event_id="987fcdeb-51a2-43d7-9876-543210fedcba")


def test_a_held_lease_outlives_its_length_and_ends_with_the_hold(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    keeper = LeaseKeeper(fake_store, lease_seconds=0.3)
    owner = new_owner()
    fake_store.begin("j1", REQUEST, max_attempts=3, queue=REALTIME_QUEUE,
                     queue_key=REALTIME_QUEUE, owner=owner, lease_seconds=0.3)
    try:
        with keeper.hold("j1", owner):
            deadline = time.monotonic() + 1.0  # three lease lengths
            while time.monotonic() < deadline:
                assert fake_store.expired_leases(10) == []
                time.sleep(0.05)
            other = fake_store.begin("j1", REQUEST, max_attempts=3, queue=REALTIME_QUEUE,
                                     queue_key=REALTIME_QUEUE, owner="w2", lease_seconds=0.3)
            assert other.verdict == "leased"
        assert keeper.held == []
        wait_for(lambda: fake_store.expired_leases(10) == ["j1"], timeout=5)
    finally:
        keeper.stop()


def test_owners_are_unique_and_name_the_node() -> None:
    owners = {new_owner() for _ in range(100)}
    assert len(owners) == 100
    assert all(o.count(":") == 2 for o in owners)
