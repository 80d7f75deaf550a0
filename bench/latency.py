"""Real-time latency while a bulk run drains, and its plot over time.

A worker with its warm-up done; `cancelq bulk` of N rows starts, and at the same moment one
process starts calling `enqueue_cancellation()` every 0.1 s (bench/drivers/realtime.py
trickle) until the bulk run is settled. Each real-time job's latency is its audit record's
`settled_at - created_at` (enqueue to settled, both stamped by the product).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import stack, wait_until, write_rows
from bench.results import percentile
from bench.suite import Bench
from bench.throughput import go, start_driver

TABLE = "latency"
ROW = "real-time jobs while the bulk run drains"
TARGET_MS = 250.0


def run_latency(b: Bench) -> None:
    rows = b.sizes.latency_rows
    path = b.logs / f"rows-{rows}.csv"
    if not path.exists():
        write_rows(path, rows)
    with stack(b.checkout, b.fakes[50].url, b.logs) as s:
        worker = s.start_worker()
        s.warm_up(worker)
        driver = start_driver(s, "trickle", "--interval", "0.1")
        run_id = f"backlog-{uuid.uuid4().hex[:8]}"
        started = time.time()
        s.bulk(path, run_id)
        go(driver)
        wait_until(lambda: s.done(run_id) >= rows, 120 + rows / 20, "the bulk run to drain")
        drained = time.time() - started
        s.client.set("bench:stop", "1")
        assert driver.stdout is not None
        out = json.loads(driver.stdout.readline())
    latencies = [1000 * x for x in out["latency"]]
    b.results.add(TABLE, ROW, "p50 ms", percentile(latencies, 0.5))
    b.results.add(TABLE, ROW, "p99 ms", percentile(latencies, 0.99))
    b.results.add(TABLE, ROW, "max ms", max(latencies))
    b.results.add(TABLE, ROW, "samples", len(latencies))
    for part in ("to_call", "call"):
        b.results.add(TABLE, ROW, f"{part} p50 ms", percentile([1000 * x for x in out[part]], 0.5))
    b.results.add(TABLE, ROW, "bulk drain s", drained)
    b.results.details.setdefault("latency:series", []).append({
        "sent": [t - started for t in out["sent_at"]], "latency_ms": latencies,
        "drained": drained})


def plot(series: list[dict[str, Any]], rows: int, path: Path) -> None:
    """Latency of each real-time job against when it was sent, one colour per repeat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    for number, one in enumerate(series, start=1):
        points = axes.scatter(one["sent"], one["latency_ms"], s=8,
                              label=f"run {number} (bulk drained at {one['drained']:.0f} s)")
        axes.axvline(one["drained"], color=points.get_facecolor()[0], linestyle=":")
    axes.axhline(TARGET_MS, color="red", linestyle="--", label=f"target p99 {TARGET_MS:.0f} ms")
    highest = max(max(one["latency_ms"]) for one in series)
    axes.set_ylim(0, 1.15 * max(highest, TARGET_MS))
    axes.set_xlabel(f"seconds since `cancelq bulk` of {rows:,} rows started")
    axes.set_ylabel("enqueue to settled (ms)")
    axes.set_title("Real-time latency while a bulk run drains (fake API at 50 ms)")
    axes.legend(loc="lower right", fontsize="small", framealpha=0.9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
