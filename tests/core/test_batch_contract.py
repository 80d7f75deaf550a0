"""`read_job` / `read_batch`: what a (batch) message's jobs become before anything runs."""

from __future__ import annotations

import pytest

from cancelq.core.contract import MAX_BATCH_JOBS, read_batch, read_job
from cancelq.core.errors import InvalidInput

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"


def test_a_valid_job_becomes_a_request() -> None:
    job = read_job("j1", {"case_id": CASE, "event_id": EVENT, "reason": "dup"}, {})
    assert job.problem is None and job.request is not None
    assert (job.request.case_id, job.request.reason) == (CASE, "dup")


def test_an_unknown_field_refuses_the_job_naming_it() -> None:
    job = read_job("j1", {"case_id": CASE, "event_id": EVENT}, {"zz": 1, "api_key": "x"})
    assert job.request is None and job.problem == "api_key: unknown field"


def test_a_bad_id_refuses_the_job_and_keeps_its_text_fields() -> None:
    job = read_job("j1", {"case_id": "nope", "event_id": EVENT, "reason": 7}, {})
    assert job.request is None and job.problem is not None and job.problem.startswith("case_id")
    assert job.fields == {"case_id": "nope", "event_id": EVENT}


def test_a_batch_shares_run_and_requester_and_refuses_only_its_bad_jobs() -> None:
    jobs = read_batch(
        [{"job_id": "a", "case_id": CASE, "event_id": EVENT},
         {"job_id": "b", "case_id": CASE, "event_id": "bad"},
         {"job_id": "c", "case_id": CASE, "event_id": EVENT, "extra": 1}],
        {"run_id": "r1", "requested_by": "ops"}, "batch-1",
    )
    assert [j.job_id for j in jobs] == ["a", "b", "c"]
    assert jobs[0].request is not None and jobs[0].request.run_id == "r1"
    assert jobs[0].request.requested_by == "ops"
    assert jobs[1].problem is not None and jobs[1].problem.startswith("event_id")
    assert jobs[2].problem == "extra: unknown field"


def test_a_job_without_an_id_gets_the_same_one_on_every_delivery() -> None:
    first = read_batch([{"case_id": CASE, "event_id": EVENT}], {}, "batch-1")[0].job_id
    again = read_batch([{"case_id": CASE, "event_id": EVENT}], {}, "batch-1")[0].job_id
    other = read_batch([{"case_id": CASE, "event_id": EVENT}], {}, "batch-2")[0].job_id
    assert first == again != other


@pytest.mark.parametrize("jobs", [None, "x", {"a": 1}, [1, 2], [{}] * (MAX_BATCH_JOBS + 1)])
def test_a_batch_that_is_no_list_of_objects_is_refused_whole(jobs: object) -> None:
    with pytest.raises(InvalidInput) as info:
        read_batch(jobs, {}, "b")
    assert str(info.value).startswith("jobs: ")
