"""`cancelq.ops.lookup`: prefixes in (over the `idx:all` index), shortest unique prefixes out."""

from __future__ import annotations

import pytest

from cancelq.core.errors import InvalidInput
from cancelq.ops.lookup import (
    AmbiguousJobId,
    JobNotFound,
    canonical_prefix,
    resolve_job_id,
    short_ids,
)
from cancelq.store.audit import AuditStore
from tests.producers.seed import add_job

A = "abcd1234-0000-4000-8000-000000000001"
B = "abcd1234-0000-4000-8000-000000000200"
C = "ffff9999-0000-4000-8000-000000000001"


@pytest.mark.parametrize(("text", "expected"), [
    ("ABCD", "abcd"),
    ("abcd1234", "abcd1234"),
    ("abcd12340", "abcd1234-0"),  # hyphens optional: put where a job id has them
    ("abcd1234-00", "abcd1234-00"),
    (" " + A.upper() + " ", A),
    (A.replace("-", ""), A),
])
def test_canonical_prefix(text: str, expected: str) -> None:
    assert canonical_prefix(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "hello", "abcd-1234", "abcd1234-" * 5, "{abcd}"])
def test_canonical_prefix_refuses_what_no_job_id_starts_with(text: str) -> None:
    with pytest.raises(InvalidInput):
        canonical_prefix(text)


def test_resolve_over_the_index(fake_store: AuditStore) -> None:
    for job_id in (A, B, C):
        add_job(fake_store, job_id=job_id)
    assert resolve_job_id(fake_store, "ffff") == C
    assert resolve_job_id(fake_store, "abcd1234-0000-4000-8000-0000000002") == B
    assert resolve_job_id(fake_store, A) == A
    with pytest.raises(AmbiguousJobId) as ambiguous:
        resolve_job_id(fake_store, "abcd1234")
    assert set(ambiguous.value.candidates) == {A, B}
    with pytest.raises(JobNotFound):
        resolve_job_id(fake_store, "0123")
    fake_store.redis.delete(fake_store.keys.job(C))  # expired record, index entry left
    with pytest.raises(JobNotFound):
        resolve_job_id(fake_store, "ffff")


def test_short_ids_are_the_shortest_unique_prefix_of_at_least_8() -> None:
    short = short_ids([A, B, C])
    assert short[C] == "ffff9999"
    assert short[A] == "abcd1234-0000-4000-8000-0000000000"
    assert short[B] == "abcd1234-0000-4000-8000-0000000002"
    assert short_ids(["abcd1234-1", "abcd1234-2"]) == {"abcd1234-1": "abcd1234-1",
                                                       "abcd1234-2": "abcd1234-2"}
    assert short_ids(["abcd12345", "abcd12346"], min_chars=4) == {
        "abcd12345": "abcd12345", "abcd12346": "abcd12346"}
    assert short_ids(["abcd1234-a", "abcd1234-a0"]) == {  # a prefix of the other: whole
        "abcd1234-a": "abcd1234-a", "abcd1234-a0": "abcd1234-a0"}
    assert short_ids(["abcd1234-5678", "abcd1234-9999"]) == {
        "abcd1234-5678": "abcd1234-5", "abcd1234-9999": "abcd1234-9"}  # never ends on "-"
