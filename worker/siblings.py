"""More cores from one worker command: `WORKER_PROCESSES - 1` sibling consumers.

Why: one worker process is bound by the GIL (Celery's consumer loop, kombu, the Redis and HTTP
clients all run Python), so one `celery -A worker worker` uses one core at most. The threads
pool has no child processes of its own; this bootstep starts the same command again,
`WORKER_PROCESSES - 1` times (default 1: no sibling; 0: one process per CPU), each a full
consumer with its own node name (`<name>-s<i>@<host>`), its own prefetch and acks. Every
guarantee is per message and lives in Redis (acks, the unacked hash, the delayed set, leases,
the shared rate limit and breaker), so N consumers keep them as N separately started workers
do.

The siblings:
- are started with `WORKER_PROCESSES=1`, so they start no siblings of their own;
- stay in the parent's process group and die with it: `PR_SET_PDEATHSIG` (Linux) sends them
  SIGTERM if the parent dies for any reason, a warm shutdown that finishes their calls;
- get SIGTERM (warm shutdown) when the parent stops, and the parent waits for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
from typing import Any

from celery import bootsteps

from cancelq.core.settings import load_settings

log = logging.getLogger("cancelq.worker")

PR_SET_PDEATHSIG = 1
#: options of the parent's command line that a sibling must not repeat
_DROPPED_WITH_VALUE = ("-n", "--hostname", "--pidfile", "--statedb", "-S")
_DROPPED_FLAGS = ("-D", "--detach")
STOP_WAIT_SECONDS = 60.0


def sibling_argv(argv: list[str], hostname: str, index: int) -> list[str]:
    """The parent's `celery ...` arguments with a node name of its own and no pid file."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _DROPPED_WITH_VALUE:
            skip = True
            continue
        if arg in _DROPPED_FLAGS or arg.startswith(tuple(f"{o}=" for o in _DROPPED_WITH_VALUE)):
            continue
        kept.append(arg)
    name, _, host = hostname.partition("@")
    return [*kept, "-n", f"{name}-s{index}@{host}" if host else f"{name}-s{index}"]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), a no-op elsewhere."""
    parent = os.getppid()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: follow it now
        os._exit(0)


class SiblingsStep(bootsteps.StartStopStep):
    """Worker bootstep: start the siblings with the worker, stop them with it."""

    label = "siblings"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, parent: Any) -> None:
        count = load_settings().processes - 1
        if count <= 0 or not _is_worker_command(sys.argv):
            return
        env = {**os.environ, "WORKER_PROCESSES": "1"}
        for index in range(1, count + 1):
            argv = sibling_argv(sys.argv[1:], str(parent.hostname), index)
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "celery", *argv], env=env, preexec_fn=_die_with_parent,
            ))
        log.info("started %d sibling consumer process(es): pids %s", count,
                 ", ".join(str(c.pid) for c in self.children))

    def stop(self, parent: Any) -> None:
        """Warm shutdown for each sibling (SIGTERM), then wait for them to finish."""
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()

    def terminate(self, parent: Any) -> None:
        self.stop(parent)


def _is_worker_command(argv: list[str]) -> bool:
    """Only a `celery ... worker ...` command line is repeated (not an embedded worker)."""
    if os.path.basename(argv[0]) not in ("celery", "__main__.py"):
        return False
    args = argv[1:]
    return any(a == "worker" and (i == 0 or args[i - 1] not in ("-A", "--app"))
               for i, a in enumerate(args))
