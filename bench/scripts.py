"""The scripts a user would write instead of cancelq: the baselines every ratio is taken to.

    python -m bench.scripts --mode threads|shared|aiohttp --url URL --jobs 5000

- threads: 64 threads, one `httpx.Client` each, POST the spec's body (the user's script);
- shared:  the same 64 threads sharing one `httpx.Client`;
- aiohttp: one `aiohttp.ClientSession`, 256 requests in flight (used to load the fake API
  alone, to show it is not the bottleneck).

Runs in its own process and prints one JSON object: jobs, seconds, its own CPU seconds,
and how many calls did not answer 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import resource
import threading
import time
import uuid
from collections.abc import Callable

import httpx

THREADS = 64
IN_FLIGHT = 256
HEADERS = {"content-type": "application/json", "cv-api-key": "bench-key"}


def body() -> dict[str, object]:
    return {"action": "CANCEL_CALENDAR_EVENT", "calendar": {"id": str(uuid.uuid4())}}


def run_threads(url: str, jobs: int, shared: bool) -> int:
    """The user's script; returns how many calls did not answer 200."""
    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for _ in range(jobs):
        work.put(f"{url}/api/v1/cases/{uuid.uuid4()}")
    one_client = httpx.Client(headers=HEADERS, timeout=30) if shared else None
    failures = [0] * THREADS

    def loop(index: int) -> None:
        client = one_client or httpx.Client(headers=HEADERS, timeout=30)
        while True:
            try:
                target = work.get_nowait()
            except queue.Empty:
                return
            if client.post(target, json=body()).status_code != 200:
                failures[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(failures)


async def run_aiohttp(url: str, jobs: int) -> int:
    import aiohttp

    failures = 0
    limit = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as session:

        async def one() -> None:
            nonlocal failures
            async with limit, session.post(f"{url}/api/v1/cases/{uuid.uuid4()}",
                                           json=body()) as response:
                await response.read()
                failures += response.status != 200

        await asyncio.gather(*(one() for _ in range(jobs)))
    return failures


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(run: Callable[[], int], jobs: int) -> dict[str, float]:
    cpu, started = cpu_seconds(), time.perf_counter()
    failures = run()
    return {"jobs": jobs, "seconds": time.perf_counter() - started,
            "cpu_seconds": cpu_seconds() - cpu, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("threads", "shared", "aiohttp"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--jobs", type=int, default=5_000)
    args = parser.parse_args()
    if args.mode == "aiohttp":
        result = measure(lambda: asyncio.run(run_aiohttp(args.url, args.jobs)), args.jobs)
    else:
        shared = args.mode == "shared"
        result = measure(lambda: run_threads(args.url, args.jobs, shared), args.jobs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
