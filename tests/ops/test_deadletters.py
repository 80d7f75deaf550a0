"""Dead letters, replay (`lua/replay.lua`), the auth gate and the live snapshot, on fakeredis.

Jobs die the way they do in a worker (`run_attempt` against a scripted `httpx.MockTransport`),
so the replay is tested on real dead records, not hand-made ones.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import fakeredis
import httpx
import pytest
from pydantic import SecretStr

from cancelq.care360.client import Care360Client
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome, State
from cancelq.core.settings import load_settings
from cancelq.ops.deadletters import dead_job_ids, list_dead, replay
from cancelq.ops.stats import snapshot
from cancelq.pipeline.attempt import AttemptResult, run_attempt
from cancelq.pipeline.auth_gate import AuthGate
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import AuditStore
from cancelq.store.auth_block import blocked_for
from cancelq.store.messages import build_task_message
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, queue_key
from cancelq.store.records import JobRecord
from tests.conftest import API_KEY

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
OK = b'{"status":200,"success":true,"message":"ok","data":{"success":true}}'
INTERNAL = b'{"status":500,"success":false,"message":"Internal error"}'
UNAUTHORIZED = b'{"status":401,"success":false,"message":"Unauthorized"}'


def event(n: int) -> str:
    return f"987fcdeb-51a2-43d7-9876-{n:012d}"


class Upstream:
    """Answers every call with the current `status`; counts calls."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = {200: OK, 401: UNAUTHORIZED}.get(self.status, INTERNAL)
        return httpx.Response(self.status, content=body)


def runtime(store: AuditStore, upstream: Upstream, *, gate: bool = True,
            backoff: float = 60.0, max_attempts: int = 2) -> Runtime:
    s = load_settings(max_attempts=max_attempts, retry_base_seconds=0.01,
                      retry_max_seconds=0.02, auth_backoff_seconds=backoff)
    client = Care360Client(s.care360_base_url, SecretStr(API_KEY), timeout_seconds=2.0,
                           transport=httpx.MockTransport(upstream))
    gates = (AuthGate(store, backoff_seconds=backoff),) if gate else ()
    return Runtime(settings=s, store=store, client=client, rand=lambda: 0.0, gates=gates)


def submit(store: AuditStore, job_id: str, n: int = 1, *, run_id: str | None = None,
           queue: str = REALTIME_QUEUE, priority: int = 0) -> None:
    request = CancelRequest.parse(case_id=CASE, event_id=event(n), run_id=run_id,
                                  reason="patient asked")
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=queue, task_id=job_id, priority=priority)
    assert store.enqueue(job_id, request, message, queue=queue) is not None


def deliver(rt: Runtime, *, queue: str = REALTIME_QUEUE, priority: int = 0) -> AttemptResult:
    raw = rt.store.redis.rpop(queue_key(queue, priority))
    assert raw is not None, "no message waiting"
    payload = json.loads(raw)  # type: ignore[arg-type]
    _args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
    job_id = kwargs.pop("job_id")
    return run_attempt(rt, job_id, CancelRequest.parse(**kwargs), queue=queue, priority=priority)


def run_out(rt: Runtime, **where: object) -> AttemptResult:
    result = deliver(rt, **where)  # type: ignore[arg-type]
    while result.state == "retrying":
        rt.store.redis.zadd(rt.store.keys.delayed, {result.job_id: 0})  # due now
        assert rt.store.promote_due() == 1
        result = deliver(rt, **where)  # type: ignore[arg-type]
    return result


def get(store: AuditStore, job_id: str) -> JobRecord:
    record = store.get(job_id)
    assert record is not None
    return record


# -- replay -------------------------------------------------------------------------------


def test_replay_gives_a_dead_job_a_fresh_budget_and_keeps_its_history(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream(500)
    rt = runtime(fake_store, upstream)
    submit(fake_store, "j1", run_id="r1")
    assert run_out(rt).outcome == Outcome.RETRIES_EXHAUSTED
    assert upstream.calls == 2
    assert [letter.record.job_id for letter in list_dead(fake_store)] == ["j1"]
    assert "HTTP 500" in list_dead(fake_store)[0].why

    report = replay(fake_store, ["j1"], who="ops@box")
    assert [r.status for r in report.results] == ["replayed"]
    job = get(fake_store, "j1")
    assert (job.state, job.outcome, job.attempt_count, job.settled_at) == (
        State.QUEUED, None, 0, None)
    assert [a.verdict for a in job.attempts] == ["retry", "retries_exhausted", "replayed"]
    assert "ops@box" in (job.attempts[-1].error or "")
    counters = fake_store.counters()
    assert counters["state:dead"] == 0 and counters["state:queued"] == 1
    assert counters["outcome:retries_exhausted"] == 0 and counters["replays"] == 1
    run = fake_store.counters("r1")
    assert run["state:dead"] == 0 and run["state:queued"] == 1 and run["replays"] == 1
    keys = fake_store.keys
    assert fake_redis.zscore(keys.index_state("queued"), "j1") == job.created_at
    assert fake_redis.zscore(keys.index_state("dead"), "j1") is None
    assert fake_redis.zscore(keys.index_outcome("retries_exhausted"), "j1") is None

    # the fresh message is a normal one: ids only in kwargsrepr, a new task id
    raw = json.loads(fake_redis.lindex(REALTIME_QUEUE, 0))  # type: ignore[arg-type]
    assert raw["headers"]["id"] != "j1"
    assert "patient asked" not in raw["headers"]["kwargsrepr"]
    assert "'job_id': 'j1'" in raw["headers"]["kwargsrepr"]

    upstream.status = 200
    result = run_out(rt)
    assert (result.state, result.outcome, result.attempt) == ("settled", "cancelled", 1)
    job = get(fake_store, "j1")
    assert [(a.number, a.verdict) for a in job.attempts] == [
        (1, "retry"), (2, "retries_exhausted"), (0, "replayed"), (1, "cancelled")]
    assert fake_store.counters()["outcome:cancelled"] == 1
    assert fake_store.counters()["attempts"] == 3


def test_replay_refuses_a_job_that_is_not_dead(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(200))
    submit(fake_store, "ok")
    run_out(rt)
    submit(fake_store, "waiting", 2)
    report = replay(fake_store, ["ok", "waiting", "nope"], who="ops@box")
    assert [r.status for r in report.results] == ["refused", "refused", "missing"]
    assert "settled (cancelled), not dead" in report.results[0].detail
    assert not report.ok
    assert get(fake_store, "ok").state is State.SETTLED
    assert fake_store.counters().get("replays", 0) == 0
    # nothing pushed for the refused ones: only the waiting job's own message
    assert fake_store.redis.llen(REALTIME_QUEUE) == 1


def test_a_second_replay_of_the_same_job_is_refused(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1)
    submit(fake_store, "j1")
    run_out(rt)
    assert replay(fake_store, ["j1"], who="a@h").ok
    again = replay(fake_store, ["j1"], who="a@h")
    assert again.results[0].status == "refused" and "queued" in again.results[0].detail
    assert fake_store.redis.llen(REALTIME_QUEUE) == 1


def test_replay_cancels_the_retention_trim_and_keeps_queue_and_priority(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream(500)
    rt = runtime(fake_store, upstream, max_attempts=1)
    rt.settings = load_settings(max_attempts=1, retry_base_seconds=0.01,
                                retry_max_seconds=0.02, audit_retention_days=1)
    submit(fake_store, "j1", queue=BULK_QUEUE, priority=3)
    run_out(rt, queue=BULK_QUEUE, priority=3)
    dead = fake_store.keys.index_outcome("retries_exhausted")  # retention's list
    assert fake_redis.zscore(dead, "j1") is not None
    assert replay(fake_store, ["j1"], who="a@h").ok
    assert fake_redis.zscore(dead, "j1") is None
    assert fake_redis.llen(queue_key(BULK_QUEUE, 3)) == 1


def test_dry_run_changes_nothing(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1)
    submit(fake_store, "j1")
    run_out(rt)
    report = replay(fake_store, ["j1"], who="a@h", dry_run=True)
    assert [r.status for r in report.results] == ["would_replay"]
    assert get(fake_store, "j1").state is State.DEAD
    assert fake_store.redis.llen(REALTIME_QUEUE) == 0


def test_dead_job_ids_filter_by_outcome_and_run(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1, gate=False)
    submit(fake_store, "a", 1, run_id="r1")
    run_out(rt)
    submit(fake_store, "b", 2, run_id="r2")
    run_out(rt)
    rt_401 = runtime(fake_store, Upstream(401), gate=False)
    submit(fake_store, "c", 3, run_id="r1")
    run_out(rt_401)
    assert sorted(dead_job_ids(fake_store)) == ["a", "b", "c"]
    assert dead_job_ids(fake_store, outcome="unauthorized") == ["c"]
    assert sorted(dead_job_ids(fake_store, run_id="r1")) == ["a", "c"]
    assert dead_job_ids(fake_store, outcome="retries_exhausted", run_id="r1") == ["a"]
    assert [d.record.job_id for d in list_dead(fake_store, outcome="unauthorized")] == ["c"]


# -- the auth gate ------------------------------------------------------------------------


def test_a_401_blocks_calls_for_every_following_job_until_cleared(
    fake_store: AuditStore,
) -> None:
    upstream = Upstream(401)
    rt = runtime(fake_store, upstream, backoff=60)
    for n in range(5):
        submit(fake_store, f"j{n}", n)
    results = [run_out(rt) for _ in range(5)]
    assert upstream.calls == 1
    assert {r.outcome for r in results} == {"unauthorized"}
    assert [r.called for r in results] == [True, False, False, False, False]
    remaining = blocked_for(fake_store)
    assert remaining is not None and 0 < remaining <= 60
    note = get(fake_store, "j3").attempts[-1]
    assert note.error_class == "NotCalled" and "CARE360_AUTH_BACKOFF_SECONDS" in (note.error or "")

    # the key is fixed: replaying lifts the block, and the jobs are called again
    upstream.status = 200
    report = replay(fake_store, dead_job_ids(fake_store), who="ops@box")
    assert report.ok and report.auth_block_cleared
    assert blocked_for(fake_store) is None
    assert Counter(run_out(rt).outcome for _ in range(5)) == {"cancelled": 5}
    assert upstream.calls == 6


def test_a_zero_backoff_turns_the_gate_off(fake_store: AuditStore) -> None:
    upstream = Upstream(401)
    rt = runtime(fake_store, upstream, backoff=0)
    for n in range(3):
        submit(fake_store, f"j{n}", n)
        run_out(rt)
    assert upstream.calls == 3
    assert blocked_for(fake_store) is None


def test_other_answers_do_not_block(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1)
    submit(fake_store, "j1")
    run_out(rt)
    assert blocked_for(fake_store) is None


def test_a_hand_made_block_without_ttl_lasts_until_cleared(fake_store: AuditStore) -> None:
    fake_store.redis.set(fake_store.keys.auth_blocked, "set by hand")  # no TTL
    upstream = Upstream(200)
    rt = runtime(fake_store, upstream)
    submit(fake_store, "j1")
    result = run_out(rt)
    assert (result.outcome, result.called, upstream.calls) == ("unauthorized", False, 0)
    assert "until the block is cleared" in (get(fake_store, "j1").attempts[-1].error or "")
    assert snapshot(fake_store).auth_blocked_seconds == -1.0
    assert snapshot(fake_store).to_json()["auth_blocked_seconds"] == -1.0


def test_replaying_only_exhausted_jobs_leaves_the_auth_block(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1)
    submit(fake_store, "j1")
    run_out(rt)
    fake_store.redis.set(fake_store.keys.auth_blocked, "x", ex=60)
    report = replay(fake_store, ["j1"], who="a@h")
    assert report.ok and not report.auth_block_cleared
    assert blocked_for(fake_store) is not None


# -- the live snapshot --------------------------------------------------------------------


def test_snapshot_matches_the_records(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(200))
    submit(fake_store, "done", 1)
    run_out(rt)
    submit(fake_store, "bulk-1", 2, queue=BULK_QUEUE)
    submit(fake_store, "bulk-2", 3, queue=BULK_QUEUE, priority=6)
    submit(fake_store, "rt", 4)
    snap = snapshot(fake_store)
    assert snap.jobs == 4 and snap.attempts == 1
    assert snap.states == {"queued": 3, "running": 0, "retrying": 0, "settled": 1, "dead": 0}
    assert snap.outcomes == {"cancelled": 1}
    depths = {q.name: q for q in snap.queues}
    assert depths[REALTIME_QUEUE].ready == 1
    assert depths[BULK_QUEUE].ready == 2 and depths[BULK_QUEUE].by_priority[6] == 1
    assert snap.oldest_queued_job == "bulk-1"
    assert snap.oldest_queued_age_seconds is not None and snap.oldest_queued_age_seconds >= 0
    assert snap.calls_last_minute == {"200": 1}
    assert snap.auth_blocked_seconds is None and snap.dead_letters == 0
    data = snap.to_json()
    json.dumps(data)  # serializable as is
    assert data["queues"][BULK_QUEUE] == {"ready": 2, "by_priority":
                                          {"0": 1, "3": 0, "6": 1, "9": 0}}


@pytest.mark.parametrize("ttl,expected", [(None, None), (30, 30.0)])
def test_snapshot_shows_the_auth_block(fake_store: AuditStore, ttl: int | None,
                                       expected: float | None) -> None:
    if ttl is not None:
        fake_store.redis.set(fake_store.keys.auth_blocked, "x", ex=ttl)
    got = snapshot(fake_store).auth_blocked_seconds
    assert got == expected if expected is None else got == pytest.approx(expected, abs=1)


def test_a_dead_id_whose_record_is_gone_is_not_a_dead_letter(fake_store: AuditStore) -> None:
    rt = runtime(fake_store, Upstream(500), max_attempts=1, gate=False)
    submit(fake_store, "a", 1)
    run_out(rt)
    submit(fake_store, "b", 2)
    run_out(rt)
    fake_store.redis.delete(fake_store.keys.job("a"))  # gone behind the store's back
    assert dead_job_ids(fake_store) == ["b"]
    assert fake_store.redis.zrange(fake_store.keys.index_state("dead"), 0, -1) == ["b"]
    assert replay(fake_store, dead_job_ids(fake_store), who="ops").ok  # `replay --all`


def test_snapshot_shows_the_breaker_and_the_bad_delayed_entries(fake_store: AuditStore) -> None:
    snap = snapshot(fake_store)
    assert (snap.breaker.state, snap.breaker.opened_at, snap.delayed_bad) == ("closed", None, 0)
    fake_store.redis.hset(fake_store.keys.breaker, mapping={
        "state": "open", "opened_at": "1795521090.5", "failures": "0"})
    fake_store.redis.hset(fake_store.keys.delayed_bad, "j", "nowhere\nx")
    data = snapshot(fake_store).to_json()
    assert data["breaker"] == {"state": "open", "opened_at": "2026-11-24T11:51:30.500Z",
                               "consecutive_failures": 0}
    assert data["delayed_bad"] == 1
