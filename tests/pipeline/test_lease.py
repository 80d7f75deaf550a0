"""`cancelq.pipeline.lease.LeaseKeeper`: one thread renews every attempt the process holds."""

from __future__ import annotations

import time
import uuid

import fakeredis
import pytest

from cancelq.core.contract import CancelRequest
from cancelq.pipeline.lease import LeaseKeeper, new_owner
from cancelq.store.audit import AuditStore
from cancelq.store.keys import FIELDS
from cancelq.store.queues import REALTIME_QUEUE
from tests.conftest import wait_for

REQUEST = CancelRequest.parse(case_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                              event_id="987fcdeb-51a2-43d7-9876-543210fedcba")


def test_a_held_lease_outlives_its_length_and_ends_with_the_hold(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    # a 2 s lease renewed every 2/3 s: a renewal may come 1.3 s late (a busy machine's
    # scheduler) before the lease runs out; 0.3 s leases failed under a loaded CI run
    keeper = LeaseKeeper(fake_store, lease_seconds=2.0)
    owner = new_owner()
    fake_store.begin("j1", REQUEST, max_attempts=3, queue=REALTIME_QUEUE,
                     queue_key=REALTIME_QUEUE, owner=owner, lease_seconds=2.0)
    try:
        with keeper.hold("j1", owner):
            deadline = time.monotonic() + 5.0  # two and a half lease lengths
            while time.monotonic() < deadline:
                assert fake_store.expired_leases(10) == []
                time.sleep(0.1)
            other = fake_store.begin("j1", REQUEST, max_attempts=3, queue=REALTIME_QUEUE,
                                     queue_key=REALTIME_QUEUE, owner="w2", lease_seconds=2.0)
            assert other.verdict == "leased"
        assert keeper.held == []
        wait_for(lambda: fake_store.expired_leases(10) == ["j1"], timeout=15)
    finally:
        keeper.stop()


def test_owners_are_unique_and_name_the_node() -> None:
    owners = {new_owner() for _ in range(100)}
    assert len(owners) == 100
    assert all(o.count(":") == 2 for o in owners)


def test_a_job_finished_during_a_renewal_is_not_reported_lost(
    fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keeper lists its leases, then renews them: a batch that finishes in between is
    done, not lost; a lease another owner took while it is still held is lost."""
    keeper = LeaseKeeper(fake_store, lease_seconds=30)
    owner = new_owner()
    for job_id in ("done", "taken", "kept"):
        fake_store.begin(job_id, REQUEST.model_copy(update={"event_id": _event(job_id)}),
                         max_attempts=3, queue=REALTIME_QUEUE, queue_key=REALTIME_QUEUE,
                         owner=owner, lease_seconds=30)
    renew = fake_store.renew_leases

    def finish_first(lease_seconds: float, held: list[tuple[str, str]]) -> list[str]:
        fake_store.finish("done", attempt=None, decision="settle", outcome="cancelled",
                          owner=owner)
        fake_store.redis.hset(fake_store.keys.job("taken"), FIELDS["lease_owner"],
                             "someone-else")
        release.__exit__(None, None, None)  # the batch of "done" ends its hold
        return renew(lease_seconds, held)

    monkeypatch.setattr(fake_store, "renew_leases", finish_first)
    release = keeper.hold("done", owner)
    release.__enter__()
    try:
        with keeper.hold_many([("taken", owner), ("kept", owner)]):
            assert keeper.renew_once() == ["taken"]
    finally:
        keeper.stop()


def _event(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
