"""The Celery tasks, run eagerly over a fakeredis runtime: thin shells, but they decide what
is recorded and when a message is handed back rather than acknowledged."""

from __future__ import annotations

import json
import uuid

import pytest
from celery.exceptions import Reject
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

import worker.tasks as tasks
from cancelq.core.contract import CancelRequest
from cancelq.pipeline.runtime import Runtime
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import BULK_QUEUE
from tests.pipeline.test_attempt import OK, Upstream, make_runtime

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"


@pytest.fixture
def rt(fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    runtime = make_runtime(fake_store, Upstream((200, OK)))
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    monkeypatch.setattr(tasks, "REQUEUE_PAUSE_SECONDS", 0.0)
    return runtime


def queued_jobs(store: AuditStore, n: int) -> list[dict[str, str]]:
    """`n` jobs recorded as bulk intake records them, as a batch message lists them."""
    out = []
    for _ in range(n):
        job = {"job_id": str(uuid.uuid4()), "case_id": CASE, "event_id": str(uuid.uuid4())}
        request = CancelRequest.parse(case_id=CASE, event_id=job["event_id"], run_id="r")
        store.enqueue(job["job_id"], request,
                      build_task_message({"job_id": job["job_id"]}, queue=BULK_QUEUE),
                      queue=BULK_QUEUE)
        out.append(job)
    return out


def test_a_batch_runs_its_good_jobs_and_records_its_bad_one(
    rt: Runtime, fake_store: AuditStore
) -> None:
    jobs = queued_jobs(fake_store, 3)
    bad = {"job_id": str(uuid.uuid4()), "case_id": CASE, "event_id": "not-a-uuid"}
    result = tasks.cancel_calendar_events.apply(kwargs={"jobs": [*jobs, bad], "run_id": "r"},
                                                throw=True)
    assert result.get() == "4 jobs: cancelled 3, refused 1"
    for job in jobs:
        record = fake_store.get(job["job_id"])
        assert record is not None and record.outcome == "cancelled"
    refused = fake_store.get(bad["job_id"])
    assert refused is not None and refused.outcome == "invalid_request"


def test_a_batch_message_that_lists_no_jobs_is_recorded_refused(
    rt: Runtime, fake_store: AuditStore
) -> None:
    batch = str(uuid.uuid4())
    result = tasks.cancel_calendar_events.apply(kwargs={"jobs": "nope"}, task_id=batch,
                                                throw=True)
    assert result.get() == "settled: invalid_request"
    record = fake_store.get(batch)
    assert record is not None and record.outcome == "invalid_request"


@pytest.fixture
def reject_down(fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis fails exactly when a refused job is recorded."""
    def down(*args: object, **kwargs: object) -> str:
        raise RedisConnectionError("down")

    monkeypatch.setattr(fake_store, "reject", down)


@pytest.mark.usefixtures("reject_down")
def test_a_redis_error_while_recording_a_refused_job_hands_the_batch_back(
    rt: Runtime, fake_store: AuditStore
) -> None:
    """Acknowledging then would lose the batch's good jobs with it."""
    jobs = queued_jobs(fake_store, 2)
    bad = {"job_id": str(uuid.uuid4()), "case_id": CASE, "event_id": "x"}
    result = tasks.cancel_calendar_events.apply(kwargs={"jobs": [*jobs, bad]})
    assert str(result.state) == "REJECTED" and isinstance(result.result, Reject)
    records = fake_store.get_many([job["job_id"] for job in jobs])
    assert [record.state for record in records] == ["queued", "queued"]  # none lost


@pytest.mark.usefixtures("reject_down")
def test_a_redis_error_while_recording_a_refused_single_job_hands_it_back(rt: Runtime) -> None:
    result = tasks.cancel_calendar_event.apply(kwargs={"case_id": "x", "event_id": "y"})
    assert str(result.state) == "REJECTED" and isinstance(result.result, Reject)


@pytest.mark.parametrize("error", [
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ResponseError("Error running script (call to f_x): @user_script:12: WRONGTYPE ..."),
])
def test_a_redis_refusal_of_the_message_itself_sets_it_aside_instead_of_a_requeue_loop(
    rt: Runtime, fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, error: ResponseError,
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(fake_store, "begin", refused)
    job_id = str(uuid.uuid4())
    result = tasks.cancel_calendar_event.apply(
        kwargs={"job_id": job_id, "case_id": CASE, "event_id": str(uuid.uuid4())},
        task_id="m-1")
    assert result.get() == "set aside: ResponseError"  # acked, not REJECTED (requeued)
    kept = json.loads(fake_store.set_aside_messages()["m-1"])
    assert kept["kwargs"]["job_id"] == job_id and kept["error"].startswith(str(error)[:20])
    lines = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()


@pytest.mark.parametrize("error", [
    RedisConnectionError("gone"), ReadOnlyError("READONLY You can't write against a replica"),
    ResponseError("BUSY Redis is busy running a script"),
    ResponseError("LOADING Redis is loading the dataset in memory"),
    OutOfMemoryError("OOM command not allowed"),
])
def test_redis_being_away_still_hands_the_message_back(
    rt: Runtime, fake_store: AuditStore, monkeypatch: pytest.MonkeyPatch, error: Exception,
) -> None:
    def away(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(fake_store, "begin", away)
    result = tasks.cancel_calendar_event.apply(
        kwargs={"job_id": str(uuid.uuid4()), "case_id": CASE, "event_id": str(uuid.uuid4())})
    assert str(result.state) == "REJECTED" and isinstance(result.result, Reject)
    assert fake_store.set_aside_messages() == {}
