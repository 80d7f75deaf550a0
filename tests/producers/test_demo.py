"""`producers.dev.demo`: what it leaves behind expires, and its summary is a table."""

from __future__ import annotations

import fakeredis
from rich.console import Console

from cancelq.store.audit import AuditStore
from cancelq.store.keys import Keys
from cancelq.store.queues import Queues
from producers.dev.demo import DEMO_KEYS_TTL, expire_demo_keys, summary_table
from tests.producers.seed import seed


def test_the_keys_a_demo_leaves_expire_and_nothing_else_is_touched(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # records, indexes, counters and queue lists of a demo deployment
    seed(AuditStore(fake_redis, Keys("demo-1"), Queues.for_prefix("demo-1")))
    fake_redis.hset("_kombu.binding.demo-1.cancellations", "x", "y")
    fake_redis.hset("unacked", "tag", "message")
    fake_redis.set("demo-1:calls:123", "1", ex=60)  # already expires: keeps its TTL
    fake_redis.set("demo-2:job:other", "another demo's key")
    fake_redis.set("c360:job:real", "real work")
    before = {key for key in fake_redis.scan_iter() if fake_redis.ttl(key) == -1}

    applied = expire_demo_keys(fake_redis, "demo-1")

    left = {key for key in fake_redis.scan_iter() if fake_redis.ttl(key) == -1}
    assert left == {"demo-2:job:other", "c360:job:real"}
    assert applied == len(before) - 2 and applied > 10
    assert "demo-1.cancellations" in before and fake_redis.ttl("demo-1.cancellations") > 0
    day = int(DEMO_KEYS_TTL.total_seconds())
    assert day - 5 <= fake_redis.ttl("demo-1:stats") <= day
    assert fake_redis.ttl("demo-1:calls:123") <= 60


def test_the_summary_is_a_table_not_python_dicts() -> None:
    counters = {"jobs": 14, "attempts": 21, "state:settled": 13, "state:dead": 1,
                "state:queued": 0, "outcome:cancelled": 8, "outcome:retries_exhausted": 1}
    out = Console(width=80, record=True)
    out.print(summary_table(counters, {"200": 8, "503": 4}))
    text = out.export_text()
    assert "{" not in text and "Counter" not in text
    for line in ("state settled", "outcome retries_exhausted", "HTTP 503", "simulator calls"):
        assert line in text
    assert "state queued" not in text  # zero counts are left out
    assert max(len(line) for line in text.splitlines()) <= 80
