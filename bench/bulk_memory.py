"""`cancelq bulk` on 1,000,000 rows: the right counts, and memory that does not grow.

    python -m bench.bulk_memory [--rows 1000000] [--small 100000]

Writes a CSV with bad rows mixed in (every 97th row has a broken id, every 101st repeats
an earlier row of the file), runs the real command (`cancelq bulk FILE --json`) against a
private redis-server, samples the producer's RSS every 50 ms (psutil), and does the same
with a `--small` file. Checks the counts against what was written, and prints both peaks:
the big file must not need more memory than the small one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from producers.dev.local_redis import start_redis_server


def write_file(path: Path, n: int) -> dict[str, int]:
    invalid = duplicates = 0
    recent: list[str] = []
    with path.open("w") as out:
        out.write("case_id,event_id,reason\n")
        for i in range(1, n + 1):
            if i % 97 == 0:
                out.write(f"not-a-uuid-{i},{uuid.uuid4()},broken\n")
                invalid += 1
            elif i % 101 == 0 and recent:
                out.write(recent[-1])
                duplicates += 1
            else:
                line = f"{uuid.uuid4()},{uuid.uuid4()},scheduled cleanup\n"
                out.write(line)
                recent = [line]
    return {"rows": n, "accepted": n - invalid - duplicates, "duplicates": duplicates,
            "invalid": invalid}


def run(path: Path, redis_url: str) -> tuple[dict[str, object], float, float]:
    env = dict(os.environ, REDIS_URL=redis_url)
    started = time.perf_counter()
    process = subprocess.Popen(["cancelq", "bulk", str(path), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out = process.communicate()[0]
    if process.returncode != 0:
        raise SystemExit(f"cancelq bulk exited {process.returncode}")
    return json.loads(out), peak / 2**20, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args()
    server = start_redis_server()
    peaks = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (args.small, args.rows):
                path = Path(tmp) / f"rows-{n}.csv"
                expected = write_file(path, n)
                summary, peak, seconds = run(path, server.url)
                got = {k: summary[k] for k in expected}
                status = "ok" if got == expected else f"MISMATCH (expected {expected})"
                print(f"{n:>9,} rows ({path.stat().st_size / 2**20:,.0f} MB): "
                      f"peak RSS {peak:,.1f} MB, {seconds:,.1f} s "
                      f"({n / seconds:,.0f} rows/s incl. start-up), counts {got} {status}",
                      flush=True)
                peaks[n] = peak
                if got != expected:
                    raise SystemExit(1)
                path.unlink()
    finally:
        server.stop()
    growth = peaks[args.rows] - peaks[args.small]
    print(f"peak RSS growth from {args.small:,} to {args.rows:,} rows: {growth:+.1f} MB")


if __name__ == "__main__":
    main()
