"""`cancelq.pipeline.attempt.run_attempt`: the whole attempt on fakeredis and `httpx.MockTransport`.

Each job goes the way a worker sees it: the producer enqueues, the "worker" pops the message
from the queue list and runs the attempt with the message's own kwargs; a retry comes back
only through `promote_due`, so the retry message itself is exercised too.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import fakeredis
import httpx
import pytest
from pydantic import SecretStr

from cancelq.care360.client import Care360Client
from cancelq.core.contract import CancelRequest
from cancelq.core.lifecycle import Outcome, State
from cancelq.core.settings import load_settings
from cancelq.pipeline.attempt import AttemptResult, reject_invalid, run_attempt
from cancelq.pipeline.gates import Defer, EndWithoutCall, Gate, GateVerdict, Proceed
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import BULK_QUEUE, REALTIME_QUEUE, queue_key
from cancelq.store.records import JobRecord
from tests.conftest import API_KEY

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
OK = (
    b'{"status":200,"success":true,"message":"Calendar event cancelled successfully",'
    b'"data":{"success":true}}'
)
INTERNAL = b'{"status":500,"success":false,"message":"Internal error"}'


def bad_request(error: str) -> bytes:
    return json.dumps(
        {"status": 400, "success": False, "message": "Invalid request", "error": error}
    ).encode()


Step = tuple[int, bytes] | tuple[int, bytes, dict[str, str]] | type[Exception]


class Upstream:
    """A scripted Care360: each call takes the next step; the last step repeats forever."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, type):
            raise step("scripted failure", request=request)  # type: ignore[call-arg]
        status, body, *rest = step
        return httpx.Response(status, content=body, headers=rest[0] if rest else None)


def make_runtime(store: AuditStore, upstream: Upstream, *, gates: Sequence[Gate] = (),
                 rand: float = 0.0, **settings: object) -> Runtime:
    values: dict[str, object] = {
        "max_attempts": 3, "retry_base_seconds": 0.01, "retry_max_seconds": 0.05,
    }
    values.update(settings)
    s = load_settings(**values)
    client = Care360Client(s.care360_base_url, SecretStr(API_KEY), timeout_seconds=2.0,
                           transport=httpx.MockTransport(upstream))
    return Runtime(settings=s, store=store, client=client, rand=lambda: rand, gates=gates)


def submit(store: AuditStore, job_id: str = "j1", *, queue: str = REALTIME_QUEUE,
           priority: int = 0, **extra: str) -> CancelRequest:
    request = CancelRequest.parse(case_id=CASE, event_id=EVENT, **extra)
    message = build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                                 queue=queue, task_id=job_id, priority=priority)
    assert store.enqueue(job_id, request, message, queue=queue) is not None
    return request


def deliver(rt: Runtime, r: fakeredis.FakeRedis, *, queue: str = REALTIME_QUEUE,
            priority: int = 0) -> AttemptResult:
    """Pop the one message waiting in the queue and run it, as the task would."""
    key = queue_key(queue, priority)
    assert r.llen(key) == 1, f"expected one message in {key!r}"
    payload = json.loads(r.rpop(key))  # type: ignore[arg-type]
    _args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
    job_id = kwargs.pop("job_id")
    request = CancelRequest.parse(**kwargs)
    return run_attempt(rt, job_id, request, queue=queue, priority=priority)


def record(rt: Runtime, job_id: str = "j1") -> JobRecord:
    got = rt.store.get(job_id)
    assert got is not None
    return got


def run_to_the_end(rt: Runtime, r: fakeredis.FakeRedis, *, limit: int = 20) -> AttemptResult:
    result = deliver(rt, r)
    for _ in range(limit):
        if result.state != "retrying":
            return result
        assert rt.store.promote_due() == 1
        result = deliver(rt, r)
    raise AssertionError("never settled")


def test_200_settles_cancelled_with_one_call(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    submit(fake_store)
    result = deliver(rt, fake_redis)
    assert result == AttemptResult("j1", "settled", "cancelled", 1, True)
    assert result.summary() == "settled: cancelled"
    assert len(upstream.calls) == 1
    assert upstream.calls[0].url.path == f"/api/v1/cases/{CASE}"
    rec = record(rt)
    assert (rec.state, rec.outcome, rec.attempt_count) == (State.SETTLED, "cancelled", 1)
    [a] = rec.attempts
    assert (a.number, a.http_status, a.verdict, a.error_class, a.error) == (
        1, 200, "cancelled", None, None
    )
    assert a.duration_ms is not None and a.duration_ms >= 0
    assert fake_store.delayed_count() == 0
    assert fake_redis.llen(REALTIME_QUEUE) == 0


def test_500_500_200_is_cancelled_after_three_calls(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((500, INTERNAL), (500, INTERNAL), (200, OK))
    rt = make_runtime(fake_store, upstream, max_attempts=8)
    submit(fake_store, run_id="run-1")

    first = deliver(rt, fake_redis)
    assert (first.state, first.attempt, first.called) == ("retrying", 1, True)
    assert first.retry_in_seconds == 0.0
    assert record(rt).state is State.RETRYING
    assert fake_redis.llen(REALTIME_QUEUE) == 0  # waits in the delayed set, not the queue
    assert fake_store.promote_due() == 1
    assert deliver(rt, fake_redis).state == "retrying"
    assert fake_store.promote_due() == 1
    last = deliver(rt, fake_redis)

    assert last == AttemptResult("j1", "settled", "cancelled", 3, True)
    assert len(upstream.calls) == 3
    rec = record(rt)
    assert [(a.number, a.http_status, a.verdict) for a in rec.attempts] == [
        (1, 500, "retry"), (2, 500, "retry"), (3, 200, "cancelled")
    ]
    assert rec.attempts[0].error_class == "TransientResponse"
    assert rec.attempts[0].error == "HTTP 500: Internal error"
    assert rec.attempts[0].raw_body == INTERNAL.decode()
    assert fake_store.counters()["attempts"] == 3
    assert fake_store.counters("run-1")["attempts"] == 3
    assert fake_store.calls_last() == {"500": 2, "200": 1}


def test_500_forever_is_dead_after_max_attempts(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((500, INTERNAL))
    rt = make_runtime(fake_store, upstream, max_attempts=4)
    submit(fake_store)
    result = run_to_the_end(rt, fake_redis)
    assert result == AttemptResult("j1", "dead", "retries_exhausted", 4, True)
    assert len(upstream.calls) == 4
    rec = record(rt)
    assert (rec.state, rec.outcome) == (State.DEAD, "retries_exhausted")
    assert [a.verdict for a in rec.attempts] == ["retry"] * 3 + ["retries_exhausted"]
    assert rec.attempts[-1].retry_in_seconds is None
    assert fake_store.delayed_count() == 0
    # a late duplicate of the message changes nothing and calls nobody
    again = run_attempt(rt, "j1", CancelRequest.parse(case_id=CASE, event_id=EVENT),
                        queue=REALTIME_QUEUE)
    assert (again.called, again.state, again.outcome) == (False, "dead", "retries_exhausted")
    assert len(upstream.calls) == 4


def test_timeouts_are_retried_then_exhausted(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream(httpx.ReadTimeout, httpx.ConnectError)
    rt = make_runtime(fake_store, upstream, max_attempts=2)
    submit(fake_store)
    assert run_to_the_end(rt, fake_redis).outcome == "retries_exhausted"
    rec = record(rt)
    assert [(a.http_status, a.error_class) for a in rec.attempts] == [
        (None, "Care360Timeout"), (None, "Care360Unreachable")
    ]
    assert all(API_KEY not in (a.error or "") for a in rec.attempts)
    assert fake_store.calls_last() == {"none": 2}


@pytest.mark.parametrize(
    ("status", "body", "outcome", "state"),
    [
        pytest.param(400, bad_request("Calendar event has already been cancelled"),
                     "already_cancelled", "settled", id="400-already-cancelled"),
        pytest.param(400, bad_request("Calendar event not found"),
                     "event_not_found", "settled", id="400-event-not-found"),
        pytest.param(400, bad_request('Calendar event can only be cancelled if agentName is '
                                      '"custom"'),
                     "not_custom_event", "settled", id="400-not-custom"),
        pytest.param(400, bad_request("Invalid action"), "invalid_request", "settled",
                     id="400-invalid-action"),
        pytest.param(400, bad_request("id must be a valid UUID"), "invalid_request", "settled",
                     id="400-invalid-uuid"),
        pytest.param(401, b'{"status":401,"success":false,"message":"Invalid or missing API key"}',
                     "unauthorized", "dead", id="401"),
        pytest.param(404, b'{"status":404,"success":false,"message":"Invalid request",'
                          b'"error":"No Case found for provided details!"}',
                     "case_not_found", "settled", id="404"),
        pytest.param(403, b"forbidden", "invalid_request", "settled", id="403"),
        pytest.param(409, b"{}", "invalid_request", "settled", id="409"),
        pytest.param(422, b"{}", "invalid_request", "settled", id="422"),
    ],
)
def test_final_answers_call_exactly_once(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis,
    status: int, body: bytes, outcome: str, state: str,
) -> None:
    upstream = Upstream((status, body), (200, OK))
    rt = make_runtime(fake_store, upstream)
    submit(fake_store)
    result = deliver(rt, fake_redis)
    assert result == AttemptResult("j1", state, outcome, 1, True)
    assert len(upstream.calls) == 1
    rec = record(rt)
    assert (rec.state.value, rec.outcome) == (state, outcome)
    [a] = rec.attempts
    assert (a.http_status, a.verdict, a.error_class) == (status, outcome, "FinalAnswer")
    # the raw body is kept only where it helps a human (unrecognised requests)
    assert a.raw_body == (body.decode() if outcome == "invalid_request" else None)
    assert fake_store.delayed_count() == 0
    assert fake_redis.llen(REALTIME_QUEUE) == 0
    assert fake_store.promote_due() == 0


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("1000", 300.0), ("0.5", 0.5)])
def test_retry_after_is_honoured_and_capped(
    fake_store: AuditStore, header: str, expected: float
) -> None:
    upstream = Upstream((429, b"slow down", {"Retry-After": header}))
    rt = make_runtime(fake_store, upstream, retry_base_seconds=2.0, retry_max_seconds=300.0,
                      rand=1.0)
    request = submit(fake_store)
    before = time.time()
    result = run_attempt(rt, "j1", request, queue=REALTIME_QUEUE)
    assert (result.state, result.retry_in_seconds) == ("retrying", expected)
    rec = record(rt)
    assert rec.attempts[0].retry_in_seconds == expected
    assert rec.attempts[0].http_status == 429
    assert rec.next_attempt_at is not None
    assert rec.next_attempt_at - before == pytest.approx(expected, abs=0.5)
    due = fake_store.redis.zscore(fake_store.keys.delayed, "j1")
    assert due is not None and due - before == pytest.approx(expected, abs=0.5)


def test_backoff_without_retry_after_uses_jitter(fake_store: AuditStore) -> None:
    upstream = Upstream((503, b""))
    rt = make_runtime(fake_store, upstream, retry_base_seconds=2.0, retry_max_seconds=300.0,
                      rand=0.5)
    request = submit(fake_store)
    assert run_attempt(rt, "j1", request, queue=REALTIME_QUEUE).retry_in_seconds == 1.0


def test_retry_returns_to_the_same_queue_and_priority(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((502, b"bad gateway"), (200, OK))
    rt = make_runtime(fake_store, upstream)
    submit(fake_store, queue=BULK_QUEUE, priority=6)
    assert deliver(rt, fake_redis, queue=BULK_QUEUE, priority=6).state == "retrying"
    assert fake_store.promote_due() == 1
    assert fake_redis.llen(REALTIME_QUEUE) == 0
    assert deliver(rt, fake_redis, queue=BULK_QUEUE, priority=6).outcome == "cancelled"


@dataclass
class ScriptedGate:
    verdict: GateVerdict
    seen: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    fail_after: bool = False

    per_batch = False

    def before_call(self, job_id: str, request: CancelRequest, queue: str) -> GateVerdict:
        return self.verdict

    def after_answer(self, job_id: str, status: int | None, outcome: str | None) -> None:
        self.seen.append((job_id, status, outcome))
        if self.fail_after:
            raise RuntimeError("policy hook broke")


def test_defer_parks_the_job_without_a_call_or_an_attempt(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    gate = ScriptedGate(Defer(0.0, "rate limited"))
    rt = make_runtime(fake_store, upstream, gates=[gate])
    submit(fake_store)
    counters = fake_store.counters()
    result = deliver(rt, fake_redis)
    assert (result.state, result.called, result.attempt) == ("deferred", False, 0)
    assert upstream.calls == []
    assert fake_store.delayed_count() == 1
    rec = record(rt)
    assert (rec.state, rec.attempt_count, rec.attempts) == (State.QUEUED, 0, ())
    assert fake_store.counters() == counters
    # when due it comes back as an ordinary message; with the gate open it runs
    assert fake_store.promote_due() == 1
    gate.verdict = Proceed()
    assert deliver(rt, fake_redis).outcome == "cancelled"
    assert len(upstream.calls) == 1
    assert gate.seen == [("j1", 200, "cancelled")]


def test_deferral_returns_to_the_same_queue_and_priority(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((200, OK))
    gate = ScriptedGate(Defer(0.0, "rate limited"))
    rt = make_runtime(fake_store, upstream, gates=[gate])
    submit(fake_store, queue=BULK_QUEUE, priority=6, run_id="run-7")
    assert deliver(rt, fake_redis, queue=BULK_QUEUE, priority=6).state == "deferred"
    assert fake_store.promote_due() == 1
    assert fake_redis.llen(BULK_QUEUE) == 0
    gate.verdict = Proceed()
    assert deliver(rt, fake_redis, queue=BULK_QUEUE, priority=6).outcome == "cancelled"
    assert record(rt).run_id == "run-7"  # the message carried the whole request


@pytest.mark.parametrize(
    ("outcome", "state"),
    [(Outcome.UNAUTHORIZED, "dead"), (Outcome.INVALID_REQUEST, "settled")],
)
def test_end_without_call_leaves_a_note(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, outcome: Outcome, state: str
) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream, gates=[ScriptedGate(EndWithoutCall(outcome, "why"))])
    submit(fake_store)
    result = deliver(rt, fake_redis)
    assert (result.state, result.outcome, result.called) == (state, outcome.value, False)
    assert upstream.calls == []
    rec = record(rt)
    assert (rec.state.value, rec.outcome, rec.attempt_count) == (state, outcome.value, 0)
    [note] = rec.attempts
    assert (note.number, note.http_status, note.error_class, note.error, note.verdict) == (
        0, None, "NotCalled", "why", outcome.value
    )
    assert fake_store.counters().get("attempts", 0) == 0
    assert fake_store.calls_last() == {}


def test_exhausted_before_the_call_is_dead_without_a_call(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    upstream = Upstream((500, INTERNAL))
    rt = make_runtime(fake_store, upstream, max_attempts=3)
    submit(fake_store)
    deliver(rt, fake_redis)
    fake_store.promote_due()
    lowered = make_runtime(fake_store, upstream, max_attempts=1)  # a redeploy lowered it
    result = deliver(lowered, fake_redis)
    assert (result.state, result.outcome, result.called) == ("dead", "retries_exhausted", False)
    assert len(upstream.calls) == 1
    assert [a.number for a in record(rt).attempts] == [1, 0]


def test_reject_invalid_records_invalid_request(fake_store: AuditStore) -> None:
    upstream = Upstream((200, OK))
    rt = make_runtime(fake_store, upstream)
    result = reject_invalid(rt, "jf", {"case_id": "not-a-uuid", "event_id": EVENT},
                            "case_id: not a valid UUID: 'not-a-uuid'", queue=REALTIME_QUEUE)
    assert (result.state, result.outcome, result.called) == ("settled", "invalid_request", False)
    assert upstream.calls == []
    rec = record(rt, "jf")
    assert (rec.state, rec.outcome, rec.case_id, rec.event_id) == (
        State.SETTLED, "invalid_request", "not-a-uuid", EVENT
    )
    [note] = rec.attempts
    assert (note.number, note.error) == (0, "case_id: not a valid UUID: 'not-a-uuid'")
    assert fake_store.counters() == {
        "jobs": 1, "state:queued": 0, "state:settled": 1, "outcome:invalid_request": 1
    }


def test_a_failing_gate_hook_does_not_lose_the_outcome(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    gate = ScriptedGate(Proceed(), fail_after=True)
    rt = make_runtime(fake_store, Upstream((200, OK)), gates=[gate])
    submit(fake_store)
    with caplog.at_level(logging.ERROR, logger="cancelq.attempt"):
        assert deliver(rt, fake_redis).outcome == "cancelled"
    assert record(rt).outcome == "cancelled"
    assert any("failed after an answer" in r.getMessage() for r in caplog.records)


def test_gate_sees_transient_statuses(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    gate = ScriptedGate(Proceed())
    rt = make_runtime(fake_store, Upstream((503, b""), httpx.ReadTimeout, (401, b"{}")),
                      gates=[gate])
    submit(fake_store)
    run_to_the_end(rt, fake_redis)
    assert gate.seen == [("j1", 503, None), ("j1", None, None), ("j1", 401, "unauthorized")]


def test_key_never_reaches_the_audit(
    fake_store: AuditStore, fake_redis: fakeredis.FakeRedis
) -> None:
    rt = make_runtime(fake_store, Upstream(httpx.ConnectError, (401, b"{}")))
    submit(fake_store)
    run_to_the_end(rt, fake_redis)
    for key in fake_redis.keys("*"):
        kind = fake_redis.type(key)
        dump: object
        if kind == "hash":
            dump = fake_redis.hgetall(key)
        elif kind == "list":
            dump = fake_redis.lrange(key, 0, -1)
        elif kind == "zset":
            dump = fake_redis.zrange(key, 0, -1)
        else:
            assert kind == "string", (key, kind)
            dump = fake_redis.get(key)
        assert API_KEY not in repr(dump), key
