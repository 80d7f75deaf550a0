"""Bulk intake speed: our streaming intake vs a naive `apply_async` loop, in the same run.

    python -m bench.intake [--rows 20000] [--repeats 3]

Both read the same CSV file and validate every row by the message contract; then the naive
loop sends each row with `cancel_calendar_event.apply_async(...)` (Celery's own publish,
one round trip per row), and ours runs `cancelq.bulk.intake.intake` (one `enqueue_many.lua`
call per 1,000 rows, with the audit record, the indexes, the counters and the idempotency
check, which pushes the rows as batch messages of `BULK_BATCH_SIZE` jobs). Each repeat
starts from an empty private redis-server; the worker is not running (idle). Prints rows/s
for both, medians, and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis

from cancelq.bulk.intake import Row, intake, read_rows
from cancelq.core.contract import CancelRequest
from cancelq.store.audit import AuditStore
from cancelq.store.queues import BULK_QUEUE
from producers.dev.local_redis import start_redis_server


def write_rows(path: Path, n: int) -> None:
    with path.open("w") as out:
        out.write("case_id,event_id,reason\n")
        for _ in range(n):
            out.write(f"{uuid.uuid4()},{uuid.uuid4()},bench cleanup\n")


def naive(path: Path, run_id: str) -> int:
    """What a first version would do: one `apply_async` per row."""
    from worker.tasks import cancel_calendar_event  # imports the app: after REDIS_URL is set

    sent = 0
    with path.open("rb") as stream:
        for row in read_rows(stream, "csv"):
            if not isinstance(row, Row):
                continue
            request = CancelRequest.parse(case_id=row.case_id, event_id=row.event_id,
                                          run_id=run_id, reason=row.reason)
            job_id = str(uuid.uuid4())
            cancel_calendar_event.apply_async(
                kwargs={"job_id": job_id, **request.model_dump(exclude_none=True)},
                queue=BULK_QUEUE, task_id=job_id,
            )
            sent += 1
    return sent


def ours(path: Path, run_id: str, store: AuditStore) -> int:
    with path.open("rb") as stream:
        summary = intake(read_rows(stream, "csv"), run_id=run_id, store=store,
                         requested_by="bench")
    return summary.accepted


def queued_jobs(client: redis.Redis) -> int:
    """Jobs on the bulk queue: one per message from the naive loop, a batch's from ours."""
    total = 0
    for payload in client.lrange(BULK_QUEUE, 0, -1):
        message = json.loads(payload)
        body = message["body"]
        if message["properties"]["body_encoding"] == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        total += len(kwargs["jobs"]) if "jobs" in kwargs else 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    server = start_redis_server()
    os.environ["REDIS_URL"] = server.url  # read by celeryconfig, for the naive loop's app
    client = redis.Redis.from_url(server.url, decode_responses=True)
    store = AuditStore(client)
    rates: dict[str, list[float]] = {"naive apply_async loop": [], "cancelq bulk intake": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.csv"
            write_rows(path, args.rows)
            for repeat in range(args.repeats):
                for name in rates:
                    client.flushall()
                    run_id = f"bench-{repeat}"
                    started = time.perf_counter()
                    if name.startswith("naive"):
                        sent = naive(path, run_id)
                    else:
                        sent = ours(path, run_id, store)
                    elapsed = time.perf_counter() - started
                    assert sent == args.rows, (name, sent)
                    assert queued_jobs(client) == args.rows, name
                    rates[name].append(args.rows / elapsed)
                    print(f"  {name:<24} run {repeat + 1}: {args.rows / elapsed:>9,.0f} rows/s",
                          flush=True)
    finally:
        client.close()
        server.stop()

    load = os.getloadavg()
    print(f"\n{args.rows:,} rows, median of {args.repeats} (load average {load[0]:.2f}):")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"  {name:<24} {value:>9,.0f} rows/s")
    naive_rate, ours_rate = medians.values()
    print(f"  ratio                    {ours_rate / naive_rate:>9.1f}x")


if __name__ == "__main__":
    main()
