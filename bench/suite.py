"""The shared state of one `python -m bench` invocation: sizes, fakes, results, the checkout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.fake_control import FakeApi
from bench.harness import Checkout
from bench.results import Results


@dataclass(frozen=True)
class Sizes:
    """How many jobs each scenario runs (the issue's sizes in full, small ones with --quick)."""

    script_jobs: int
    celery_jobs: int
    bulk_rows: int
    realtime_jobs: int
    latency_rows: int
    queued: int
    retrying: int
    intake_rows: int


FULL = Sizes(script_jobs=5_000, celery_jobs=5_000, bulk_rows=20_000, realtime_jobs=3_000,
             latency_rows=20_000, queued=100_000, retrying=10_000, intake_rows=50_000)
QUICK = Sizes(script_jobs=2_000, celery_jobs=2_000, bulk_rows=3_000, realtime_jobs=1_000,
              latency_rows=3_000, queued=10_000, retrying=1_000, intake_rows=20_000)


@dataclass
class Bench:
    checkout: Checkout
    logs: Path
    sizes: Sizes
    results: Results
    fakes: dict[int, FakeApi]
    """The fake Care360 API by latency in ms (0 and 50), shared by every scenario."""
    profile: bool = False

    def is_last(self, repeat: int, repeats: int) -> bool:
        return repeat == repeats - 1
