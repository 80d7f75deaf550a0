"""The whole pipeline, end to end: producer -> Redis broker -> real worker -> simulator -> audit.

No mocks: a private `redis-server`, `celery -A worker worker` as a real process, and the
Care360 simulator over HTTP. Each test counts the calls the simulator really received, so
"exactly one call" means one HTTP request, not one log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import celery
import pytest
import redis

from cancelq.core.contract import TASK_NAME
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.queues import REALTIME_QUEUE
from cancelq.store.records import JobRecord, Query
from producers.enqueue import enqueue_cancellation
from tests.conftest import API_KEY, ROOT, Simulator, WorkerFactory, wait_for, worker_env

pytestmark = pytest.mark.integration

FINAL_STATES = (State.SETTLED, State.DEAD)


def _id() -> str:
    return str(uuid.uuid4())


def _settled(store: AuditStore, job_id: str, timeout: float = 20.0) -> JobRecord:
    """Wait until the job is settled or dead; return its record with attempts."""

    def final() -> JobRecord | None:
        record = store.get(job_id)
        return record if record is not None and record.state in FINAL_STATES else None

    result: JobRecord = wait_for(final, timeout=timeout)
    return result


def _calls(sim: Simulator, event_id: str) -> int:
    return len(sim.control.calls(event_id=event_id))


def _statuses(record: JobRecord) -> list[int | None]:
    return [a.http_status for a in record.attempts]


# -- 1. every outcome row -----------------------------------------------------------------


def test_every_outcome_row_through_the_real_worker(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    control = simulator.control
    start_worker()
    case = _id()
    ok, done, other_agent, scripted_400, scripted_422 = (_id() for _ in range(5))
    control.add_event(case, ok)
    control.add_event(case, done, cancelled=True)
    control.add_event(case, other_agent, agent_name="careteam")
    control.add_event(case, scripted_400)
    control.add_event(case, scripted_422)
    control.script(scripted_400, [400])
    control.script(scripted_422, [422])
    missing_event = _id()  # the case exists, the event does not
    missing_case, event_of_missing_case = _id(), _id()

    expected = {
        (case, ok): ("cancelled", State.SETTLED, 200),
        (case, done): ("already_cancelled", State.SETTLED, 400),
        (case, missing_event): ("event_not_found", State.SETTLED, 400),
        (case, other_agent): ("not_custom_event", State.SETTLED, 400),
        (case, scripted_400): ("invalid_request", State.SETTLED, 400),
        (case, scripted_422): ("invalid_request", State.SETTLED, 422),
        (missing_case, event_of_missing_case): ("case_not_found", State.SETTLED, 404),
    }
    jobs = {
        pair: enqueue_cancellation(*pair, store=real_store).job_id for pair in expected
    }
    for pair, (outcome, state, status) in expected.items():
        record = _settled(real_store, jobs[pair])
        assert (record.outcome, record.state) == (outcome, state), pair
        assert record.attempt_count == 1
        assert _statuses(record) == [status]
        assert _calls(simulator, pair[1]) == 1, f"{outcome}: exactly one call"
    # nothing is left to retry, so no late second call can happen either
    assert real_store.delayed_count() == 0
    assert control.stats()["total"] == len(expected)
    # an unknown 400 keeps the raw body in the audit
    raw = real_store.get(jobs[(case, scripted_400)])
    assert raw is not None and raw.attempts[0].raw_body
    assert "Bad Request" in raw.attempts[0].raw_body
    assert control.event(ok) == {
        "case_id": case, "event_id": ok, "agent_name": "custom", "cancelled": True
    }


def test_wrong_key_is_dead_unauthorized_after_exactly_one_call(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker(CV_API_KEY="sk-wrong-key")
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.DEAD, "unauthorized")
    assert _statuses(record) == [401]
    assert _calls(simulator, event) == 1
    assert real_store.delayed_count() == 0
    assert simulator.control.event(event)["cancelled"] is False  # type: ignore[index]


# -- 2, 3. retries --------------------------------------------------------------------------


def test_two_500s_then_200_is_cancelled_after_three_calls(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker()
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, [500, 500])
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    assert record.attempt_count == 3
    assert _statuses(record) == [500, 500, 200]
    assert [a.number for a in record.attempts] == [1, 2, 3]
    assert [a.verdict for a in record.attempts] == ["retry", "retry", "cancelled"]
    assert _calls(simulator, event) == 3


def test_500_forever_is_retries_exhausted_after_max_attempts_calls(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker(CANCEL_MAX_ATTEMPTS=4)
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, [500] * 10)
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.DEAD, "retries_exhausted")
    assert record.attempt_count == 4
    assert _statuses(record) == [500] * 4
    assert record.attempts[-1].verdict == "retries_exhausted"
    assert _calls(simulator, event) == 4
    assert real_store.delayed_count() == 0
    assert simulator.control.event(event)["cancelled"] is False  # type: ignore[index]


def test_retry_after_is_honoured(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    # backoff alone would wait at most 0.05 s; only Retry-After can make the gap ~1 s
    start_worker(CANCEL_RETRY_MAX_SECONDS=5, CELERY_VISIBILITY_TIMEOUT=60)
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, [{"status": 429, "retry_after": 1}])
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    assert _statuses(record) == [429, 200]
    assert record.attempts[0].retry_in_seconds == 1.0
    calls = simulator.control.calls(event_id=event)
    assert [c["status"] for c in calls] == [429, 200]
    gap = calls[1]["time"] - calls[0]["time"]
    assert gap >= 0.9, f"second call {gap:.2f}s after a Retry-After of 1 s"


def test_hung_call_times_out_and_is_retried(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker(CARE360_TIMEOUT_SECONDS=1)
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, ["hang"])
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    first, second = record.attempts
    assert first.error_class == "Care360Timeout"
    assert first.http_status is None
    assert first.duration_ms is not None and 900 <= first.duration_ms < 5000
    assert second.http_status == 200
    # the simulator saw the hung request dropped by the client (499), then the retry
    wait_for(lambda: _calls(simulator, event) == 2)
    calls = sorted(simulator.control.calls(event_id=event), key=lambda c: c["time"])
    assert [(c["status"], c["applied"]) for c in calls] == [(499, False), (200, True)]
    assert calls[1]["time"] - calls[0]["time"] >= 0.9


# -- 6, 7. idempotency --------------------------------------------------------------------


def test_duplicates_send_one_call(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker()
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    results = [enqueue_cancellation(case, event, store=real_store) for _ in range(3)]
    assert len({r.job_id for r in results}) == 1
    assert [r.duplicate for r in results] == [False, True, True]
    record = _settled(real_store, results[0].job_id)
    assert record.outcome == "cancelled"
    # settled `cancelled` is still live for idempotency: a fourth request is a duplicate too
    again = enqueue_cancellation(case, event, store=real_store)
    assert (again.job_id, again.duplicate) == (results[0].job_id, True)
    assert real_store.counters()["jobs"] == 1
    assert _calls(simulator, event) == 1


def test_lost_response_settles_already_cancelled(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker()
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, ["lost"])
    job = enqueue_cancellation(case, event, store=real_store)
    record = _settled(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "already_cancelled")
    assert record.attempt_count == 2
    assert _statuses(record) == [500, 400]
    calls = simulator.control.calls(event_id=event)
    assert [(c["status"], c["applied"]) for c in calls] == [(500, True), (400, False)]


# -- 8. a producer in another language ----------------------------------------------------


@pytest.fixture
def foreign_producer(redis_url: str) -> Iterator[celery.Celery]:
    app = celery.Celery("foreign", broker=redis_url, set_as_current=False)
    app.conf.task_serializer = "json"
    yield app
    app.close()


def test_raw_broker_message_gets_a_full_audit_record(
    start_worker: WorkerFactory,
    simulator: Simulator,
    real_store: AuditStore,
    foreign_producer: celery.Celery,
) -> None:
    case, with_id, without_id = _id(), _id(), _id()
    simulator.control.add_event(case, with_id)
    simulator.control.add_event(case, without_id)
    job_id = _id()
    foreign_producer.send_task(
        TASK_NAME,
        kwargs={"job_id": job_id, "case_id": case, "event_id": with_id,
                "run_id": "go-batch-7", "requested_by": "billing-svc"},
        queue=REALTIME_QUEUE,
    )
    # no job_id at all: the task id is the job id
    sent = foreign_producer.send_task(
        TASK_NAME, kwargs={"case_id": case, "event_id": without_id}, queue=REALTIME_QUEUE
    )
    assert real_store.get(job_id) is None  # nothing recorded before the worker sees it
    start_worker()

    record = _settled(real_store, job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    assert (record.case_id, record.event_id) == (case, with_id)
    assert (record.run_id, record.requested_by) == ("go-batch-7", "billing-svc")
    assert record.queue == REALTIME_QUEUE
    assert record.attempt_count == 1 and _statuses(record) == [200]
    assert record.settled_at is not None and record.settled_at >= record.created_at
    assert real_store.job_for_pair(case, with_id) == job_id
    # found through the indexes like any other job
    assert [r.job_id for r in real_store.query(Query(event_id=with_id))] == [job_id]
    assert job_id in [r.job_id for r in real_store.query(Query(outcome="cancelled"))]

    other = _settled(real_store, str(sent.id))
    assert (other.event_id, other.outcome) == (without_id, "cancelled")
    counters = real_store.counters()
    assert counters["jobs"] == 2
    assert counters["outcome:cancelled"] == 2
    assert counters["state:settled"] == 2
    assert counters.get("state:queued", 0) == counters.get("state:running", 0) == 0
    # and the pair is now protected against a duplicate from our own producer
    dup = enqueue_cancellation(case, with_id, store=real_store)
    assert (dup.job_id, dup.duplicate) == (job_id, True)
    assert _calls(simulator, with_id) == 1


# -- 9. SIGKILL mid-batch -----------------------------------------------------------------


def test_sigkill_mid_batch_loses_no_job(
    start_worker: WorkerFactory,
    simulator: Simulator,
    real_store: AuditStore,
    redis_url: str,
) -> None:
    control = simulator.control
    env = {"CELERY_VISIBILITY_TIMEOUT": 4, "CANCEL_RETRY_MAX_SECONDS": 0.3}
    first = start_worker(**env)
    case = _id()
    events = [_id() for _ in range(40)]
    control.add_events([{"case_id": case, "event_id": e} for e in events])
    control.set_faults(latency_ms=1500)
    jobs = {e: enqueue_cancellation(case, e, store=real_store).job_id for e in events}

    wait_for(lambda: control.stats()["in_flight"] >= 10, timeout=15)
    first.kill()
    killed_at = time.monotonic()
    control.set_faults(latency_ms=0)
    start_worker(**env)

    still_open: list[str] = []

    def all_final() -> bool:
        records = real_store.get_many(list(jobs.values()))
        still_open[:] = [f"{r.job_id[:8]} {r.state.value} {[a.error_class for a in r.attempts]}"
                         for r in records if r.state not in FINAL_STATES]
        return len(records) == len(jobs) and not still_open

    # Recovery comes from the reaper (the lease, 3 s in tests) or kombu's redelivery (the
    # visibility timeout, 4 s, plus one sweep derived from it), plus worker start-up. kombu's
    # stock sweep (every 10th call of a 10 s timer) would take ~100 s or more: the deadline
    # sits well below that, and well above what a loaded 2-core machine needs.
    try:
        wait_for(all_final, timeout=75)
    except AssertionError:
        raise AssertionError(f"still open after 75 s: {still_open}") from None
    recovery = time.monotonic() - killed_at  # reported in a failure message below

    broker = redis.Redis.from_url(redis_url)
    try:
        # A killed attempt can come back twice: kombu redelivers its message after the
        # visibility timeout and the reaper requeues its expired lease. The second copy finds
        # the job settled and is acked without a call; poll until the queue has drained.
        wait_for(lambda: broker.hlen("unacked") == 0 and broker.llen(REALTIME_QUEUE) == 0,
                 timeout=30)
    finally:
        broker.close()

    records = {r.job_id: r for r in real_store.get_many(list(jobs.values()))}
    outcomes = Counter(r.outcome for r in records.values())
    assert set(outcomes) <= {"cancelled", "already_cancelled"}, outcomes
    assert sum(outcomes.values()) == len(jobs)
    assert all(r.state is State.SETTLED for r in records.values())
    assert real_store.delayed_count() == 0

    # the counters agree with the records, and nothing is left queued, running or retrying
    counters = real_store.counters()
    assert counters["jobs"] == len(jobs)
    assert counters["state:settled"] == len(jobs)
    for state in ("queued", "running", "retrying", "dead"):
        assert counters.get(f"state:{state}", 0) == 0, (state, counters)
    for outcome, n in outcomes.items():
        assert counters[f"outcome:{outcome}"] == n
    recorded_calls = sum(
        1
        for r in records.values()
        for a in r.attempts
        if a.number > 0 and a.error_class != "WorkerLost"
    )
    assert counters["attempts"] == recorded_calls

    # every event is cancelled exactly once at Care360
    calls = control.calls()
    applied = Counter(c["event_id"] for c in calls if c["applied"])
    assert applied == Counter(events)

    # the kill really interrupted calls, and each interrupted job was redone and recorded
    lost = [r for r in records.values() if any(a.error_class == "WorkerLost" for a in r.attempts)]
    assert lost, f"no attempt was interrupted by the kill (recovered in {recovery:.1f}s)"
    for record in lost:
        assert len(record.attempts) == 2, record.to_json()
        interrupted, redone = record.attempts
        assert (interrupted.error_class, interrupted.verdict) == ("WorkerLost", "interrupted")
        # calls that arrived before the kill came from the killed worker (same clock)
        before = [c for c in calls if c["event_id"] == record.event_id and c["time"] < killed_at]
        if any(c["applied"] for c in before):  # its call did cancel, but it never heard
            assert (record.outcome, redone.http_status) == ("already_cancelled", 400)
        else:  # it died before its call reached Care360
            assert (record.outcome, redone.http_status) == ("cancelled", 200)
    assert any(r.outcome == "already_cancelled" for r in lost)


def test_a_message_the_broker_lost_is_published_again_and_its_job_settles(
    start_worker: WorkerFactory,
    simulator: Simulator,
    real_store: AuditStore,
    redis_url: str,
) -> None:
    """The safety net under every broker loss: the audit knows the job waits, the worker's
    pass finds its message nowhere and publishes it again, once, with a note."""
    case, event, other = _id(), _id(), _id()
    simulator.control.add_events([{"case_id": case, "event_id": e} for e in (event, other)])
    job = enqueue_cancellation(case, event, store=real_store).job_id
    broker = redis.Redis.from_url(redis_url)
    try:
        assert broker.delete(REALTIME_QUEUE) == 1  # the broker lost its message
    finally:
        broker.close()
    kept = enqueue_cancellation(case, other, store=real_store).job_id
    start_worker(CELERY_VISIBILITY_TIMEOUT=4, CANCEL_RETRY_MAX_SECONDS=0.3)
    record = _settled(real_store, job, timeout=60)
    assert record.outcome == "cancelled"
    assert [(a.number, a.error_class) for a in record.attempts] == [(0, "MessageLost"), (1, None)]
    assert record.attempts[0].verdict == "republished"
    assert _calls(simulator, event) == 1
    untouched = _settled(real_store, kept)  # its message was never lost: no note
    assert [a.number for a in untouched.attempts] == [1]


# -- 10. the key appears nowhere ----------------------------------------------------------


def _values(client: redis.Redis) -> Iterator[bytes]:
    """Every key name and every value in the database, whatever the type."""
    for key in client.scan_iter(count=1000):
        parts: list[Any] = [key]
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key))
        elif kind == b"hash":
            for k, v in client.hgetall(key).items():
                parts += [k, v]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"set":
            parts += client.smembers(key)
        elif kind == b"zset":
            parts += client.zrange(key, 0, -1)
        elif kind == b"stream":
            for _entry, fields in client.xrange(key) or []:
                for k, v in (fields or {}).items():
                    parts += [k, v]
        elif kind != b"none":  # "none": the key went away since SCAN saw it
            raise AssertionError(f"unexpected Redis type {kind!r} for {key!r}")
        for part in parts:
            if part is not None:
                yield part if isinstance(part, bytes) else str(part).encode()


def _expanded(blob: bytes) -> Iterator[bytes]:
    """The blob, plus the decoded body of any kombu message in it (bodies are base64)."""
    yield blob
    try:
        data = json.loads(blob)
    except ValueError:
        return
    for text in _strings(data):
        try:
            yield base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            continue


def _strings(data: object) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def _redis_dump(redis_url: str) -> bytes:
    client = redis.Redis.from_url(redis_url)
    try:
        return b"\n".join(part for value in _values(client) for part in _expanded(value))
    finally:
        client.close()


def test_api_key_appears_nowhere(
    start_worker: WorkerFactory,
    simulator: Simulator,
    real_store: AuditStore,
    redis_url: str,
) -> None:
    control = simulator.control
    worker = start_worker("-l", "debug")
    secret = API_KEY.encode()
    case = _id()
    ok, flaky, refused, bad, hung = (_id() for _ in range(5))
    for event in (ok, flaky, refused, bad, hung):
        control.add_event(case, event)
    control.script(flaky, [500])
    control.script(refused, [401])
    control.script(bad, [400])
    control.script(hung, ["hang"])
    jobs = [enqueue_cancellation(case, e, store=real_store).job_id for e in (ok, flaky, bad)]
    # a foreign message that the contract refuses gets a record too
    foreign = celery.Celery("foreign", broker=redis_url, set_as_current=False)
    try:
        sent = foreign.send_task(
            TASK_NAME, kwargs={"case_id": case, "event_id": "nope"}, queue=REALTIME_QUEUE
        )
    finally:
        foreign.close()
    jobs.append(str(sent.id))
    outcomes = [_settled(real_store, j).outcome for j in jobs]
    assert outcomes == ["cancelled", "cancelled", "invalid_request", "invalid_request"]

    # while the hung call is in flight, its message sits in the broker's unacked hash
    jobs.append(enqueue_cancellation(case, hung, store=real_store).job_id)
    wait_for(lambda: control.stats()["in_flight"] == 1)
    in_flight_dump = _redis_dump(redis_url)
    assert b"unacked" in in_flight_dump and jobs[-1].encode() in in_flight_dump
    assert _settled(real_store, jobs[-1]).outcome == "cancelled"

    # last, so that no policy reacting to a 401 can hold back the other jobs
    jobs.append(enqueue_cancellation(case, refused, store=real_store).job_id)
    record = _settled(real_store, jobs[-1])
    assert (record.state, record.outcome) == (State.DEAD, "unauthorized")

    final_dump = _redis_dump(redis_url)
    assert b"unauthorized" in final_dump and b"Care360Timeout" in final_dump
    log = worker.log()
    assert "unauthorized" in log and "HTTP 500" in log  # the log is the real one
    assert secret not in in_flight_dump
    assert secret not in final_dump
    assert API_KEY not in log
    assert API_KEY not in json.dumps([r.to_json() for r in real_store.get_many(jobs)])


# -- 11. refusing to start ----------------------------------------------------------------


def _run_worker_expecting_refusal(env: dict[str, str]) -> str:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info",
         "--without-mingle", "--without-gossip"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        output, _ = process.communicate()
        raise AssertionError(f"the worker did not refuse to start within 20 s:\n{output}") from None
    assert process.returncode != 0, output
    assert " ready." not in output
    assert "Traceback" not in output, output
    return output


@pytest.mark.parametrize(
    ("variable", "overrides"),
    [
        ("CV_API_KEY", {}),
        ("CANCEL_MAX_ATTEMPTS", {"CANCEL_MAX_ATTEMPTS": "abc"}),
        ("CANCEL_RETRY_MAX_SECONDS", {"CANCEL_RETRY_MAX_SECONDS": "100",
                                      "CELERY_VISIBILITY_TIMEOUT": "10"}),
    ],
)
def test_worker_refuses_to_start_on_bad_config(
    redis_url: str, variable: str, overrides: dict[str, str]
) -> None:
    env = worker_env(redis_url, "http://127.0.0.1:9", **overrides)
    if variable == "CV_API_KEY":
        del env["CV_API_KEY"]
    output = _run_worker_expecting_refusal(env)
    naming = [line for line in output.splitlines() if variable in line]
    assert len(naming) == 1, output
    assert API_KEY not in output
