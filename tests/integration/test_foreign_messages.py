"""Messages our producer did not make, on a real worker, a real Redis and the simulator: a
job id naming another job's keys, a second job for a pair that has one, a redelivered copy
of a job waiting out its backoff. Each test counts the HTTP calls the simulator received."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import celery
import pytest

from cancelq.core.contract import TASK_NAME, CancelRequest
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.messages import build_task_message
from cancelq.store.queues import REALTIME_QUEUE, queue_key
from cancelq.store.records import JobRecord, Query
from producers.enqueue import enqueue_cancellation
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def _id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def foreign(redis_url: str) -> Iterator[celery.Celery]:
    """A producer in another language: sends the task straight to the broker."""
    app = celery.Celery("foreign", broker=redis_url, set_as_current=False)
    app.conf.task_serializer = "json"
    yield app
    app.close()


def _final(store: AuditStore, job_id: str, timeout: float = 20.0) -> JobRecord:
    def done() -> JobRecord | None:
        record = store.get(job_id)
        return record if record is not None and record.state.is_final else None

    found: JobRecord = wait_for(done, timeout=timeout)
    return found


def _calls(sim: Simulator, event_id: str) -> int:
    return len(sim.control.calls(event_id=event_id))


def _queue_empty(store: AuditStore) -> bool:
    return store.redis.llen(queue_key(REALTIME_QUEUE, 0)) == 0


# -- item 2: a job id naming another job's keys ----------------------------------------------


def test_a_job_id_naming_another_jobs_keys_is_refused_at_once_and_the_victim_settles(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore,
    foreign: celery.Celery,
) -> None:
    case, victim_event, poison_event, victim = _id(), _id(), _id(), _id()
    simulator.control.add_event(case, victim_event)
    simulator.control.add_event(case, poison_event)
    # sent before its victim: on the old code it made `job:<victim>:attempts` a hash
    foreign.send_task(TASK_NAME, queue=REALTIME_QUEUE, kwargs={
        "job_id": f"{victim}:attempts", "case_id": case, "event_id": poison_event})
    request = CancelRequest.parse(case_id=case, event_id=victim_event)
    message = build_task_message({"job_id": victim, **request.model_dump(exclude_none=True)},
                                 queue=REALTIME_QUEUE, task_id=victim)
    assert real_store.enqueue(victim, request, message, queue=REALTIME_QUEUE) is not None
    worker = start_worker()

    def refused() -> list[JobRecord]:
        return real_store.query(Query(outcome="invalid_request"), with_attempts=True)

    poison, = wait_for(refused, timeout=10)  # within seconds, once
    assert poison.event_id == poison_event and poison.job_id != victim
    assert poison.attempts[0].error is not None
    assert poison.attempts[0].error.startswith("job_id: ")
    record = _final(real_store, victim)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    assert [a.http_status for a in record.attempts] == [200]
    assert len(record.attempts) == 1  # the poison message added nothing to the victim
    assert _calls(simulator, victim_event) == 1 and _calls(simulator, poison_event) == 0
    wait_for(lambda: _queue_empty(real_store), timeout=10)
    assert real_store.redis.zcard(real_store.keys.leases) == 0
    assert "requeued" not in worker.log()
    assert len(refused()) == 1


# -- item 7: a foreign message for a pair that has a live job --------------------------------


@pytest.mark.parametrize("first", ["direct", "producer"])
def test_a_direct_message_for_a_queued_pair_is_a_duplicate_whatever_runs_first(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore,
    foreign: celery.Celery, first: str,
) -> None:
    case, event, direct_id = _id(), _id(), _id()
    simulator.control.add_event(case, event)

    def direct() -> None:
        foreign.send_task(TASK_NAME, queue=REALTIME_QUEUE, task_id=direct_id,
                          kwargs={"job_id": direct_id, "case_id": case, "event_id": event})

    if first == "direct":  # the direct message is first in line, the pair already claimed
        job = enqueue_cancellation(case, event, store=real_store)
        real_store.redis.delete(queue_key(REALTIME_QUEUE, 0))  # the producer's message ...
        direct()
        real_store.redis.lpush(queue_key(REALTIME_QUEUE, 0), *_producer_payload(job.job_id,
                                                                              case, event))
    else:
        job = enqueue_cancellation(case, event, store=real_store)
        direct()
    start_worker()

    record = _final(real_store, job.job_id)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    noted = wait_for(lambda: [a for a in (real_store.get(job.job_id) or record).attempts
                              if a.verdict == "duplicate"], timeout=10)
    assert direct_id in (noted[0].error or "")
    wait_for(lambda: _queue_empty(real_store), timeout=10)
    assert real_store.get(direct_id) is None  # no second job for the pair
    assert _calls(simulator, event) == 1


def _producer_payload(job_id: str, case: str, event: str) -> list[str]:
    """The producer's message for a job, as `enqueue` pushed it."""
    request = CancelRequest.parse(case_id=case, event_id=event)
    return [build_task_message({"job_id": job_id, **request.model_dump(exclude_none=True)},
                               queue=REALTIME_QUEUE, task_id=job_id).payload]


def test_a_direct_message_run_first_makes_the_producers_request_a_duplicate(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore,
    foreign: celery.Celery,
) -> None:
    case, event, direct_id = _id(), _id(), _id()
    simulator.control.add_event(case, event)
    start_worker()
    foreign.send_task(TASK_NAME, queue=REALTIME_QUEUE,
                      kwargs={"job_id": direct_id, "case_id": case, "event_id": event})
    assert _final(real_store, direct_id).outcome == "cancelled"
    dup = enqueue_cancellation(case, event, store=real_store)
    assert (dup.job_id, dup.duplicate) == (direct_id, True)
    assert _calls(simulator, event) == 1


# -- item 10: a redelivered copy of a job waiting out its backoff ---------------------------


def test_a_second_copy_of_a_retrying_job_waits_for_its_retry_after(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore,
) -> None:
    worker = start_worker(CANCEL_RETRY_MAX_SECONDS=10, CELERY_VISIBILITY_TIMEOUT=60)
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, [{"status": 429, "retry_after": 4}])
    job = enqueue_cancellation(case, event, store=real_store)

    def retrying() -> bool:
        record = real_store.get(job.job_id, with_attempts=False)
        return record is not None and record.state is State.RETRYING

    wait_for(retrying, timeout=15)
    # a copy of its message (a redelivery) while the job waits out Retry-After
    real_store.redis.lpush(queue_key(REALTIME_QUEUE, 0), *_producer_payload(job.job_id,
                                                                          case, event))
    wait_for(lambda: "not due" in worker.log(), timeout=10)
    assert _calls(simulator, event) == 1  # the copy made no call
    assert retrying()

    record = _final(real_store, job.job_id)  # the delayed entry brings it back when due
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    calls = simulator.control.calls(event_id=event)
    assert [c["status"] for c in calls] == [429, 200]
    gap = calls[1]["time"] - calls[0]["time"]
    assert gap >= 3.9, f"second call {gap:.2f}s after a Retry-After of 4 s"
