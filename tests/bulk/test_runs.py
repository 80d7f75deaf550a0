"""`RunProgress` from a run's counters: every job counted once, also after retention has
deleted some of the run's ended jobs from Redis."""

from __future__ import annotations

from cancelq.bulk.runs import RunProgress


def test_ended_jobs_retention_deleted_are_counted_by_their_outcome() -> None:
    """Trimming takes a job off its state counter (records in Redis), never off its outcome
    counter: 5 of these 10 jobs were trimmed (4 cancelled, 1 unauthorized)."""
    progress = RunProgress("r", 1.0, {
        "jobs": 10, "state:queued": 3, "state:settled": 2, "state:dead": 0,
        "outcome:cancelled": 5, "outcome:already_cancelled": 1, "outcome:unauthorized": 1,
    })
    assert (progress.state("settled"), progress.state("dead"), progress.state("queued")) == (
        6, 1, 3)
    assert (progress.done, progress.pending, progress.trimmed) == (7, 3, 5)
    assert progress.to_json()["percent"] == 70.0 and not progress.finished


def test_nothing_trimmed_reads_the_counters_as_they_are() -> None:
    progress = RunProgress("r", 1.0, {"jobs": 3, "state:settled": 2, "state:running": 1,
                                       "outcome:cancelled": 2})
    assert (progress.done, progress.pending, progress.trimmed) == (2, 1, 0)
    replayed = RunProgress("r", 1.0, {"jobs": 1, "state:queued": 1})  # a dead job replayed
    assert (replayed.done, replayed.pending, replayed.trimmed) == (0, 1, 0)
