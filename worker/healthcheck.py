"""`python -m worker.healthcheck ROLE`: the container healthchecks of docker-compose.yml.

Exit 0 when healthy, 1 (with one line on stderr) when not. Each check asks the thing
itself, not just whether a process exists:

    worker     the worker named worker@HOSTNAME answers a broadcast ping through the broker
    beat       the pid in the pidfile is alive and the audit store's Redis answers
    flower     Flower answers /healthcheck (exempt from its auth)
    simulator  the simulator answers /_sim/health
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click

#: docker-compose.yml starts beat with `--pidfile` set to this path.
BEAT_PIDFILE = Path("/tmp/celerybeat.pid")
FLOWER_URL = "http://127.0.0.1:5555/healthcheck"
SIMULATOR_URL = "http://127.0.0.1:8360/_sim/health"
TIMEOUT_SECONDS = 5.0


class Unhealthy(Exception):
    pass


def check_worker() -> None:
    from worker.celery import app

    node = f"worker@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=TIMEOUT_SECONDS) or []
    if not any(node in reply for reply in replies):
        raise Unhealthy(f"{node} did not answer a ping in {TIMEOUT_SECONDS:.0f}s")


def check_beat() -> None:
    from cancelq.core.settings import load_settings
    from cancelq.store.connections import redis_client

    try:
        pid = int(BEAT_PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"beat is not running ({BEAT_PIDFILE}: {exc})") from None
    client = redis_client(load_settings())
    try:
        client.ping()
    finally:
        client.close()


def check_http(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            if answer.status != 200:
                raise Unhealthy(f"{url} answered {answer.status}")
    except OSError as exc:
        raise Unhealthy(f"{url}: {exc}") from None


CHECKS: dict[str, Callable[[], None]] = {
    "worker": check_worker,
    "beat": check_beat,
    "flower": lambda: check_http(FLOWER_URL),
    "simulator": lambda: check_http(SIMULATOR_URL),
}


@click.command()
@click.argument("role", type=click.Choice(sorted(CHECKS)))
def main(role: str) -> None:
    """Exit 0 if ROLE is healthy here, else 1 with one line on stderr."""
    try:
        CHECKS[role]()
    except Exception as exc:  # any failure is "unhealthy", said in one line
        click.echo(f"unhealthy: {role}: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main(prog_name="python -m worker.healthcheck")
