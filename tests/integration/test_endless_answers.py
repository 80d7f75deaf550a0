"""A real worker against answers that never end: the simulator's `drip` script sends a 200
whose body comes a byte every half second, each byte within any read timeout. Before every
call had a total deadline, such a job stayed `running` for good (its lease renewed, never
reaped) and, in a batch, held every other job's outcome with it.
"""

from __future__ import annotations

import uuid

import pytest

from cancelq.bulk.writer import BulkRow, BulkWriter
from cancelq.core.lifecycle import State
from cancelq.store.audit import AuditStore
from cancelq.store.records import JobRecord
from producers.enqueue import enqueue_cancellation
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration

#: generous: the deadline is 1 s, the retry base 0.05 s; a stuck job never settles at all
SETTLE_WITHIN = 30.0


def _id() -> str:
    return str(uuid.uuid4())


def _final(store: AuditStore, job_ids: list[str]) -> list[JobRecord] | None:
    records = store.get_many(job_ids)
    if len(records) == len(job_ids) and all(r.state.is_final for r in records):
        return records
    return None


def test_a_dripping_answer_ends_at_the_deadline_and_the_job_is_retried(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    start_worker(CARE360_TIMEOUT_SECONDS=1)
    case, event = _id(), _id()
    simulator.control.add_event(case, event)
    simulator.control.script(event, ["drip"])
    job = enqueue_cancellation(case, event, store=real_store)
    [record] = wait_for(lambda: _final(real_store, [job.job_id]), timeout=SETTLE_WITHIN)
    assert (record.state, record.outcome) == (State.SETTLED, "cancelled")
    first, second = record.attempts  # two calls: the lease was never lost in between
    assert first.error_class == "Care360Timeout" and "deadline" in (first.error or "")
    assert second.http_status == 200


def test_a_dripping_answer_in_a_batch_holds_no_other_job(
    start_worker: WorkerFactory, simulator: Simulator, real_store: AuditStore
) -> None:
    pairs = [(_id(), _id()) for _ in range(5)]
    simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in pairs])
    simulator.control.script(pairs[2][1], ["drip"])
    writer = BulkWriter(real_store, run_id="drip", requested_by="test", batch_size=5)
    job_ids = [j.job_id for j in writer.send([BulkRow(i + 1, c, e)
                                               for i, (c, e) in enumerate(pairs)])]
    start_worker(CARE360_TIMEOUT_SECONDS=1, CARE360_RATE_LIMIT="0")
    records = wait_for(lambda: _final(real_store, job_ids), timeout=SETTLE_WITHIN)
    assert [r.outcome for r in records] == ["cancelled"] * 5
    assert [len(r.attempts) for r in records] == [1, 1, 2, 1, 1]
    assert records[2].attempts[0].error_class == "Care360Timeout"
