"""cancelq/store/script_pipeline.py on a real redis-server: no `SCRIPT EXISTS` before each
pipeline, and a script Redis has forgotten (restart, `SCRIPT FLUSH`) still runs exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from cancelq.store.audit import AuditStore
from tests.store.test_audit import EVENT, EVENT_2, begin, enqueue, record, req, settle


@contextmanager
def script_commands(client: redis.Redis) -> Iterator[list[str]]:
    """The SCRIPT commands clients send while the body runs (INFO commandstats)."""
    def count() -> int:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))

    seen: list[str] = []
    before = count()
    yield seen
    seen.extend(["SCRIPT"] * (count() - before))


def _pipelined(store: AuditStore) -> AuditStore:
    """A store whose finishes go in a pipeline, as the worker's do (the breaker rides on them)."""
    store.ride_along(lambda pipe: None)
    return store


def test_a_pipelined_finish_sends_no_script_exists(real_store: AuditStore) -> None:
    store = _pipelined(real_store)
    for job_id in ("j0", "j1"):
        enqueue(store, job_id, req(event=EVENT if job_id == "j0" else EVENT_2))
        begin(store, job_id, req(event=EVENT if job_id == "j0" else EVENT_2))
    assert settle(store, "j0", 1, "cancelled", status=200)  # the script is loaded now
    with script_commands(store.redis) as sent:
        assert settle(store, "j1", 1, "cancelled", status=200)
    assert sent == []
    assert record(store, "j1").outcome == "cancelled"


def test_a_pipelined_finish_after_the_scripts_were_flushed_runs_once(
    real_store: AuditStore,
) -> None:
    store = _pipelined(real_store)
    enqueue(store, "j1")
    begin(store, "j1")
    store.redis.script_flush()  # as a Redis restart does
    assert settle(store, "j1", 1, "cancelled", status=200)
    got = store.get("j1", with_attempts=True)
    assert got is not None
    assert (got.state.value, got.outcome, len(got.attempts)) == ("settled", "cancelled", 1)
    assert store.redis.script_exists(store.scripts._scripts["finish"].sha) == [True]
