"""`AuditStore.query` walks the smaller of a run's and a state's index when both are named:
the dead jobs of a big run are read from the dead index, not from the whole run."""

from __future__ import annotations

from typing import Any

import pytest

from cancelq.store.audit import AuditStore
from cancelq.store.records import Query
from tests.producers.seed import add_job, finish


def walked(
    store: AuditStore, q: Query, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], set[str]]:
    read: set[str] = set()
    real = store.redis.zrevrangebyscore

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        read.add(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(store.redis, "zrevrangebyscore", spy)
    return [r.job_id for r in store.query(q)], read


def test_the_smaller_of_the_run_and_the_state_index_is_walked(
    fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [add_job(fake_store, run_id="big") for _ in range(12)]
    dead = jobs[3]
    finish(fake_store, dead, status=503, error="HTTP 503", outcome="retries_exhausted",
           dead=True)
    keys = fake_store.keys
    found, read = walked(fake_store, Query(run_id="big", state="dead"), monkeypatch)
    assert (found, read) == ([dead], {keys.index_state("dead")})
    for _ in range(5):
        add_job(fake_store, run_id="other")  # 16 queued jobs in all, 12 in the run
    queued, read = walked(fake_store, Query(run_id="big", state="queued"), monkeypatch)
    assert sorted(queued) == sorted(set(jobs) - {dead})
    assert read == {keys.index_run("big")}
