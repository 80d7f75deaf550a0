"""Real processes: `bulk/test_inbox`; real Redis, workers, simulator."""


from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from cancelq.store.audit import AuditStore
from tests.bulk.test_inbox import _id, csv_text, drop, summary_of
from tests.bulk.test_inbox import beats as beats  # noqa: F401  (a fixture, by name)
from tests.conftest import Simulator, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def test_dropped_files_are_processed_once_with_two_beats(
    real_store: AuditStore,
    simulator: Simulator,
    start_worker: WorkerFactory,
    beats: list[Path],
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    start_worker(CLEANUP_INBOX=str(inbox), CARE360_RATE_LIMIT="0")
    first = [(_id(), _id()) for _ in range(12)]
    second = [(_id(), _id()) for _ in range(8)]
    simulator.control.add_events([{"case_id": c, "event_id": e} for c, e in first + second])
    drop(inbox, "one.csv", csv_text(first, "not,valid"))
    lines = [json.dumps({"case_id": c, "event_id": e}) for c, e in second]
    drop(inbox, "two.jsonl", "\n".join(lines + lines[:2]) + "\n")
    drop(inbox, "three.csv", "wrong,header\n1,2\n")

    processed, failed = inbox / "processed", inbox / "failed"

    def summaries() -> list[str]:
        return sorted(p.name for p in (*processed.glob("*.json"), *failed.glob("*.json")))

    wait_for(lambda: len(summaries()) == 3, timeout=30)
    time.sleep(5)  # a couple more ticks of the schedule: nothing must run twice
    assert summaries() == [
        "one.csv.summary.json", "three.csv.summary.json", "two.jsonl.summary.json"]
    assert sorted(p.name for p in processed.iterdir() if not p.name.endswith(".json")) == [
        "one.csv", "two.jsonl"]
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []

    one, two = summary_of(processed, "one.csv"), summary_of(processed, "two.jsonl")
    assert (one["accepted"], one["invalid"], two["accepted"], two["duplicates"]) == (12, 1, 8, 2)
    runs = real_store.redis.zrange(real_store.keys.runs, 0, -1)
    assert sorted(runs) == sorted([str(one["run_id"]), str(two["run_id"])])

    wait_for(lambda: real_store.counters().get("state:settled", 0) == 20, timeout=30)
    per_event = Counter(call["event_id"] for call in simulator.control.calls())
    assert len(per_event) == 20 and set(per_event.values()) == {1}

    senders = [log for log in beats if "Sending due task" in log.read_text()]
    assert len(senders) == 1, "only the beat holding the lock sends"

