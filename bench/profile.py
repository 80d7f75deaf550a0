"""Where the worker's CPU goes: py-spy on the worker during a measurement (`--profile`).

py-spy samples the worker 100 times a second, only the thread holding the GIL (`--gil`: so
threads waiting on a socket or a queue are not counted as busy), and writes collapsed stacks
(logs/profile-worker.txt; `flamegraph.pl` or speedscope draw them); the report lists the
functions with the most samples, by their own time and including what they call (minus the
threading and start-up frames every sample has).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.suite import Bench

_LINE = re.compile(r":\d+\)$")
_PLUMBING = ("(threading.py)", "(click/", "(<frozen runpy>)", "(celery/bin/", "(celery/__main__",
             "(concurrent/futures/thread.py)")


@contextmanager
def profiled(b: Bench, pid: int, enabled: bool, path: str = "real-time") -> Iterator[None]:
    """Record the worker while the body runs, if enabled and py-spy is installed; the
    result goes in the report under `path` (the real-time or the bulk path)."""
    spy = shutil.which("py-spy")
    if not enabled or spy is None:
        if enabled:
            print("bench: --profile needs py-spy (pip install py-spy); skipped", flush=True)
        yield
        return
    out = b.logs / f"profile-worker-{path}.txt"
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil",
         "--subprocesses", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=(b.logs / "py-spy.log").open("ab"))
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    if out.exists():
        b.results.details.setdefault("profile", {})[path] = top_frames(out)


def top_frames(path: Path, limit: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Percent of samples by function: its own ("self") and with its callees ("total")."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")[1:]]  # [0]: the thread
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(part in frame for part in _PLUMBING):
                total[frame] += count

    def percent(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100 * n / samples) for name, n in counter.most_common(limit)]

    return {"self": percent(own), "total": percent(total), "samples": [("all", samples)]}
