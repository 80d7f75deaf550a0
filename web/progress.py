"""A bulk run as the console shows it: `ReadThrough.run`'s progress plus its rate and ETA.

The rate is the run's settled and dead jobs over the time since it started (Redis's clock,
which stamped the start); the ETA is what is pending at that rate. Both are None until a
job is done: a guess from nothing would mislead.
"""

from __future__ import annotations

from typing import Any

from cancelq.ops.readthrough import LocatedRun, ReadThrough


def run_json(located: LocatedRun, now: float) -> dict[str, Any]:
    """`cancelq run --json`'s object, with `source`, `rate_per_second` and `eta_seconds`."""
    progress = located.progress
    data = located.to_json()
    rate = eta = None
    if located.source == "redis" and progress.started_at is not None and progress.done:
        elapsed = max(0.001, now - progress.started_at)
        rate = round(progress.done / elapsed, 2)
        eta = round(progress.pending / rate, 1) if rate and not progress.finished else 0.0
    data.update(rate_per_second=rate, eta_seconds=eta)
    return data


def read_run(reader: ReadThrough, run_id: str) -> dict[str, Any] | None:
    """The run's object, or None when neither Redis nor the archive knows it."""
    located = reader.run(run_id)
    if not located.progress.exists:
        return None
    return run_json(located, reader.store.now())
