"""A real-time producer: `enqueue_cancellation()` calls from one process, as a user makes them.

    PYTHONPATH=CHECKOUT REDIS_URL=... python bench/drivers/realtime.py burst --jobs 3000
    PYTHONPATH=CHECKOUT REDIS_URL=... python bench/drivers/realtime.py trickle --interval 0.1

Run by file path inside the checkout under test. Prints "ready" once imported and connected,
then waits for a line on stdin before it starts, so the bench times the calls, not Python's
start-up.

- burst: the calls one after another; prints {"jobs", "seconds"} (the enqueue time alone).
- trickle: one call every `--interval` seconds until the key `bench:stop` exists, then waits
  until those jobs are settled and prints each one's enqueue-to-settled latency from its
  audit record (settled_at - created_at, both written by the product) and when it was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from producers.enqueue import default_store, enqueue_cancellation

STOP_KEY = "bench:stop"


def burst(jobs: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(jobs):
        enqueue_cancellation(str(uuid.uuid4()), str(uuid.uuid4()))
    return {"jobs": jobs, "seconds": time.perf_counter() - started}


def trickle(interval: float, timeout: float) -> dict[str, list[float]]:
    store = default_store()
    sent: list[tuple[str, float]] = []
    while not store.redis.exists(STOP_KEY):
        sent.append((enqueue_cancellation(str(uuid.uuid4()), str(uuid.uuid4())).job_id,
                     time.time()))
        time.sleep(interval)
    ids = [job_id for job_id, _ in sent]
    deadline = time.monotonic() + timeout
    while True:
        records = store.get_many(ids, with_attempts=False)
        if all(r.settled_at is not None for r in records) and len(records) == len(ids):
            break
        if time.monotonic() > deadline:
            raise SystemExit("real-time jobs did not settle in time")
        time.sleep(0.2)
    calls = [next(a for a in r.attempts if a.number > 0)
             for r in store.get_many(ids, with_attempts=True)]
    return {
        "sent_at": [at for _, at in sent],
        "latency": [(r.settled_at or 0.0) - r.created_at for r in records],
        # where it went: enqueue to the call's start (delivery, a free thread, the gates,
        # begin), and the call itself (a free slot, the API's 50 ms)
        "to_call": [a.started_at - r.created_at for r, a in zip(records, calls, strict=True)],
        "call": [(a.duration_ms or 0.0) / 1000 for a in calls],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("burst", "trickle"))
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    default_store().redis.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    if args.mode == "burst":
        result: object = burst(args.jobs)
    else:
        result = trickle(args.interval, args.timeout)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
