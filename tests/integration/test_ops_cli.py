"""`cancelq dlq` and `cancelq stats` against a real worker, a real Redis and the simulator.

The auth story end to end: a worker with a wrong key dead-letters 20 jobs after at most a
couple of calls; a worker with the right key settles them all `cancelled` after one
`cancelq dlq replay --all`, and the audit still holds the earlier attempts. Then a mixed
run, and `cancelq stats --json` must agree with the audit records and with the simulator.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE
from cancelq.store.records import JobRecord, Query
from producers.cli import main
from producers.enqueue import submit
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def _id() -> str:
    return str(uuid.uuid4())


def cli(redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": redis_url})


def enqueue(store: AuditStore, case: str, event: str, *, queue: str = REALTIME_QUEUE,
            run_id: str | None = None) -> str:
    request = CancelRequest.parse(case_id=case, event_id=event, run_id=run_id)
    return submit(request, store=store, queue=queue).job_id


def records(store: AuditStore) -> list[JobRecord]:
    return store.query(Query(limit=10_000), with_attempts=True)


def test_wrong_key_dead_letters_with_few_calls_then_one_replay_settles_all(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str
) -> None:
    control = simulator.control
    case = _id()
    events = [_id() for _ in range(20)]
    control.add_events([{"case_id": case, "event_id": e} for e in events])

    wrong = start_worker(CV_API_KEY="sk-wrong-rotated-key", WORKER_CONCURRENCY=2)
    job_ids = [enqueue(real_store, case, e, run_id="rotated") for e in events]
    wait_for(lambda: real_store.counters().get("state:dead") == 20, timeout=30)
    wrong.stop()

    calls = control.stats()
    assert calls["total"] <= 2, calls  # the first answers, in flight together; then none
    assert set(calls["by_status"]) == {"401"}
    assert {r.outcome for r in records(real_store)} == {"unauthorized"}

    listed = cli(redis_url, "dlq", "list", "--outcome", "unauthorized", "--json")
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)
    assert sorted(letter["job_id"] for letter in letters) == sorted(job_ids)
    assert all(letter["died_at"] and letter["outcome"] == "unauthorized" for letter in letters)
    called = [letter for letter in letters if letter["calls"]]
    assert len(called) == calls["total"]
    assert all(letter["why"].startswith("HTTP 401") for letter in called)  # those that called
    assert all("CARE360_AUTH_BACKOFF_SECONDS" in letter["why"]  # ... the rest say why not
               for letter in letters if letter["calls"] == 0)
    table = cli(redis_url, "dlq", "list", "--run", "rotated")
    assert table.exit_code == 0 and "20 dead job(s)" in table.stdout

    dry = cli(redis_url, "dlq", "replay", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would replay 20 of 20" in dry.stderr
    assert real_store.counters()["state:dead"] == 20

    start_worker()  # the key is fixed
    replayed = cli(redis_url, "dlq", "replay", "--all", "--outcome", "unauthorized",
                   "--by", "ops@console")
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 20 of 20 job(s); auth block cleared" in replayed.stderr
    wait_for(lambda: real_store.counters().get("outcome:cancelled") == 20, timeout=30)

    for record in records(real_store):
        verdicts = [a.verdict for a in record.attempts]
        assert verdicts[0] == "unauthorized"  # the earlier attempt (or note) is still there
        assert verdicts[-2:] == ["replayed", "cancelled"]
        assert "ops@console" in (record.attempts[-2].error or "")
        assert record.attempts[-1].number == 1  # a fresh budget
    assert all(control.event(e)["cancelled"] for e in events)  # type: ignore[index]
    counters = real_store.counters()
    assert counters["state:dead"] == 0 and counters["outcome:unauthorized"] == 0
    assert counters["replays"] == 20 and counters["state:settled"] == 20

    again = cli(redis_url, "dlq", "replay", job_ids[0], "nope")
    assert again.exit_code == 1
    assert f"{job_ids[0]}  refused: job is settled (cancelled), not dead" in again.stderr
    assert "nope  no such job" in again.stderr

    bad = cli(redis_url, "dlq", "replay", job_ids[0], "--all")
    assert bad.exit_code == 2 and "not both" in bad.stderr


def test_stats_match_the_audit_after_a_mixed_run(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore, redis_url: str
) -> None:
    control = simulator.control
    case = _id()
    ok = [_id() for _ in range(4)]
    done, careteam, flaky, missing = _id(), _id(), _id(), _id()
    control.add_events([{"case_id": case, "event_id": e} for e in ok])
    control.add_event(case, done, cancelled=True)
    control.add_event(case, careteam, agent_name="careteam")
    control.add_event(case, flaky)
    control.script(flaky, [500, 500])
    bulk_events = [_id() for _ in range(3)]

    # The worker consumes the real-time queue only, so the bulk jobs stay queued.
    start_worker("-Q", REALTIME_QUEUE, CANCEL_MAX_ATTEMPTS=2)
    bulk_ids = [enqueue(real_store, case, e, queue=BULK_QUEUE, run_id="mixed")
                for e in bulk_events]
    for event in [*ok, done, careteam, flaky, missing]:
        enqueue(real_store, case, event, run_id="mixed")
    wait_for(lambda: sum(r.state.is_final for r in records(real_store)) == 8, timeout=30)

    result = cli(redis_url, "stats", "--json")
    assert result.exit_code == 0, result.output
    stats: dict[str, Any] = json.loads(result.stdout)
    audit = records(real_store)
    states = Counter(r.state.value for r in audit)
    outcomes = Counter(r.outcome for r in audit if r.outcome)

    assert stats["jobs"] == len(audit) == 11
    assert stats["states"] == {s.value: states.get(s.value, 0) for s in State}
    assert stats["outcomes"] == dict(outcomes)
    assert stats["outcomes"] == {"cancelled": 4, "already_cancelled": 1,
                                 "not_custom_event": 1, "event_not_found": 1,
                                 "retries_exhausted": 1}
    assert stats["dead_letters"] == states["dead"] == 1
    assert stats["attempts"] == sum(1 for r in audit for a in r.attempts if a.number > 0)
    assert stats["queues"][BULK_QUEUE]["ready"] == 3
    assert stats["queues"][REALTIME_QUEUE]["ready"] == 0
    assert stats["delayed"] == 0
    assert stats["oldest_queued"]["job_id"] == bulk_ids[0]
    assert stats["oldest_queued"]["age_seconds"] >= 0
    sim = control.stats()
    assert stats["calls_last_minute"]["total"] == sim["total"] == 9
    assert stats["calls_last_minute"]["by_status"] == sim["by_status"]
    assert stats["auth_blocked_seconds"] is None

    run = json.loads(cli(redis_url, "stats", "--run", "mixed", "--json").stdout)
    assert run["jobs"] == 11 and run["states"] == stats["states"]

    human = cli(redis_url, "stats")
    assert human.exit_code == 0, human.output
    assert "dead letters 1" in human.stdout and "calls in the last minute: 9" in human.stdout
