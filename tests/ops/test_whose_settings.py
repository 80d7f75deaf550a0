"""Issue 20: whose settings `cancelq doctor` judges, and a worker's key verdict in health.

Each worker publishes its effective settings (masked) and Care360's verdict on its key with
its heartbeat; doctor judges those, and says in one line when its shell's differ. The
real-process proof is tests/integration/test_whose_settings.py.
"""

from __future__ import annotations

import dataclasses

from cancelq.core.settings import load_settings
from cancelq.ops.doctor import (
    Check,
    check_settings,
    effective_settings,
    key_log_line,
    key_verdict,
    whose_settings,
)
from cancelq.ops.health import Heartbeat, judge, read_heartbeats, write_heartbeat
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE

NOW = 1_800_000_000.0
KEY = "sk-never-in-a-heartbeat-42"


def beat(node: str = "w@a", **fields: object) -> Heartbeat:
    base = Heartbeat(node=node, host="a", pid=1, concurrency=4, queues=(REALTIME_QUEUE,),
                     started_at=NOW - 60, at=NOW, consumed_at=NOW)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def shown(**env: str) -> dict[str, str | None]:
    return effective_settings(load_settings(**env))


def test_a_heartbeat_carries_masked_settings_and_never_the_key(fake_store: AuditStore) -> None:
    settings = shown(REDIS_URL="redis://:pw-hb-secret@10.0.0.5:6379/0", CV_API_KEY=KEY)
    write_heartbeat(fake_store, beat(settings=settings, key_verdict="accepted"))
    raw = str(fake_store.redis.hgetall(fake_store.keys.workers))
    assert KEY not in raw and "pw-hb-secret" not in raw
    (read,) = read_heartbeats(fake_store)
    assert read.settings is not None and read.settings["REDIS_URL"] == (
        "redis://:***@10.0.0.5:6379/0")
    assert read.key_verdict == "accepted"


def test_an_old_heartbeat_without_settings_still_reads() -> None:
    text = beat().encode().replace(',"settings":null,"key_verdict":null', "")
    decoded = Heartbeat.decode(text)
    assert decoded is not None and decoded.settings is None and decoded.key_verdict is None
    assert Heartbeat.decode(beat(key_verdict="bogus").encode()).key_verdict is None  # type: ignore[union-attr]


def test_doctor_judges_the_workers_and_says_in_one_line_when_the_shell_differs() -> None:
    workers = shown(CARE360_BASE_URL="http://127.0.0.1:8360", CV_API_KEY=KEY)
    shell = shown()
    beats = [beat(settings=workers, key_verdict="accepted")]
    whose = whose_settings(shell, beats, NOW)
    assert whose.workers and whose.key_verdict == "accepted"
    assert whose.settings["(Care360 base URL in use)"] == "http://127.0.0.1:8360"
    check = check_settings(shell, whose, beats, NOW)
    assert check.status == "ok" and not check.details
    assert check.summary == ("judged the workers' (w@a); this shell differs from them in "
                             "(Care360 base URL in use), CARE360_BASE_URL")
    same = check_settings(workers, whose, beats, NOW)
    assert same.summary == "judged the workers' (w@a)"


def test_doctor_warns_when_the_workers_disagree_and_falls_back_to_the_shell() -> None:
    one, two = shown(KEY_PREFIX="a"), shown(KEY_PREFIX="b")
    beats = [beat("w@a", settings=one), beat("w@b", settings=two)]
    check = check_settings(one, whose_settings(one, beats, NOW), beats, NOW)
    assert check.status == "warn" and "differ among themselves in KEY_PREFIX" in check.summary
    offline = [beat(settings=one, at=NOW - 600)]
    assert not whose_settings(one, offline, NOW).workers
    assert check_settings(one, whose_settings(one, offline, NOW), offline, NOW).summary == (
        "judged this shell's (no online worker publishes its own)")


def test_a_rejected_key_is_one_line_and_makes_health_fail() -> None:
    check = Check("care360", "fail", "x", data={"base_url": "https://c360.test",
                                                 "without_key": 401, "with_key": 401})
    assert key_verdict(check) == "rejected"
    line = key_log_line(check)
    assert "\n" not in line and "REJECTED" in line and "unauthorized" in line
    verdict = judge([beat(key_verdict="rejected")], {}, now=NOW, max_age=60)
    assert not verdict.healthy and verdict.why == (
        "w@a: Care360 rejected its API key (401) at start; fix CV_API_KEY_FILE and restart it")
    assert judge([beat(key_verdict="accepted")], {}, now=NOW, max_age=60).healthy
    accepted = Check("care360", "ok", "x", data={"base_url": "u", "with_key": 404})
    assert key_verdict(accepted) == "accepted"
    assert key_verdict(Check("care360", "fail", "cannot reach u (ConnectError)")) == "unknown"
