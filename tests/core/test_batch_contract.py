"""`read_job` / `read_batch`: what a (batch) message's jobs become before anything runs."""

from __future__ import annotations

import pytest

from cancelq.core.contract import MAX_BATCH_JOBS, job_id_of, read_batch, read_job
from cancelq.core.errors import InvalidInput

CASE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
EVENT = "987fcdeb-51a2-43d7-9876-543210fedcba"
J1, JA, JB, JC = (f"0000000{n}-0000-4000-8000-000000000000" for n in range(4))


def test_a_valid_job_becomes_a_request() -> None:
    job = read_job(J1, {"case_id": CASE, "event_id": EVENT, "reason": "dup"}, {})
    assert job.problem is None and job.request is not None
    assert (job.request.case_id, job.request.reason) == (CASE, "dup")


def test_an_unknown_field_refuses_the_job_naming_it() -> None:
    job = read_job(J1, {"case_id": CASE, "event_id": EVENT}, {"zz": 1, "api_key": "x"})
    assert job.request is None and job.problem == "api_key: unknown field"


def test_a_bad_id_refuses_the_job_and_keeps_its_text_fields() -> None:
    job = read_job(J1, {"case_id": "nope", "event_id": EVENT, "reason": 7}, {})
    assert job.request is None and job.problem is not None and job.problem.startswith("case_id")
    assert job.fields == {"case_id": "nope", "event_id": EVENT}


def test_a_batch_shares_run_and_requester_and_refuses_only_its_bad_jobs() -> None:
    jobs = read_batch(
        [{"job_id": JA, "case_id": CASE, "event_id": EVENT},
         {"job_id": JB, "case_id": CASE, "event_id": "bad"},
         {"job_id": JC, "case_id": CASE, "event_id": EVENT, "extra": 1}],
        {"run_id": "r1", "requested_by": "ops"}, "batch-1",
    )
    assert [j.job_id for j in jobs] == [JA, JB, JC]
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


@pytest.mark.parametrize("bad", [
    f"{J1}:attempts", "j1", "../x", "", 7, f"{{{J1}}}", J1.replace("-", ""), "a" * 5000,
])
def test_a_job_id_that_is_no_canonical_uuid_is_refused_under_an_id_of_its_own(
    bad: object,
) -> None:
    """A job id is part of Redis keys: `<victim>:attempts` must never reach one."""
    job = read_job(bad, {"case_id": CASE, "event_id": EVENT}, {}, fallback=J1)
    if bad == "":  # no id at all: the task id is the job id
        assert (job.job_id, job.problem) == (J1, None)
        return
    assert job.request is None and job.problem is not None
    assert job.problem.startswith("job_id: ")
    assert len(job.problem) < 120  # one line, the bad id cut short
    assert job.job_id != J1 and job_id_of(job.job_id, "")[1] is None  # canonical
    assert read_job(bad, {}, {}, fallback=JA).job_id == job.job_id  # the same on redelivery


def test_a_job_id_in_capitals_is_the_same_job_in_lower_case() -> None:
    job = read_job("ABCDEF01-0000-4000-8000-00000000000A", {"case_id": CASE, "event_id": EVENT},
                   {})
    assert job.problem is None and job.job_id == "abcdef01-0000-4000-8000-00000000000a"


def test_a_foreign_task_id_that_is_no_uuid_gives_a_derived_job_id() -> None:
    first = read_job(None, {"case_id": CASE, "event_id": EVENT}, {}, fallback="go:task:1")
    again = read_job(None, {"case_id": CASE, "event_id": EVENT}, {}, fallback="go:task:1")
    assert first.problem is None and first.job_id == again.job_id
    assert job_id_of(first.job_id, "")[1] is None


def test_a_batch_job_with_a_poison_id_is_refused_and_the_others_go_on() -> None:
    jobs = read_batch(
        [{"job_id": f"{JA}:attempts", "case_id": CASE, "event_id": EVENT},
         {"job_id": JB, "case_id": CASE, "event_id": EVENT}], {}, JC,
    )
    assert jobs[0].problem is not None and jobs[0].problem.startswith("job_id: ")
    assert ":" not in jobs[0].job_id and jobs[1].request is not None
