"""`python -m worker.healthcheck ROLE`: the container healthchecks of docker-compose.yml.

Exit 0 when healthy, 1 (with one line on stderr) when not. Each check asks the thing
itself, not just whether a process exists:

    worker     the workers on this host consume: `cancelq health --this-host`, the same check
               (heartbeats and queue-head ages in Redis, `cancelq.ops.health`), whatever
               the node names
    beat       the pid in the pidfile is alive and the audit store's Redis answers
    flower     Flower answers /healthcheck (exempt from its auth)
    web        the web console answers /healthz (exempt from its sign-in)
    simulator  the simulator answers /_sim/health
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click

#: docker-compose.yml starts beat with `--pidfile` set to this path.
BEAT_PIDFILE = Path("/tmp/celerybeat.pid")
FLOWER_URL = "http://127.0.0.1:5555/healthcheck"
SIMULATOR_URL = "http://127.0.0.1:8360/_sim/health"
WEB_URL = "http://127.0.0.1:8080/healthz"
TIMEOUT_SECONDS = 5.0


class Unhealthy(Exception):
    """What is wrong with the role checked: `main` prints it in one line and exits 1."""


def check_worker() -> None:
    from cancelq.core.settings import load_settings
    from cancelq.ops.health import DEFAULT_MAX_AGE_SECONDS, Selector, check, this_host
    from cancelq.store.audit import audit_store

    store = audit_store(load_settings())
    try:
        store.fail_fast()
        verdict = check(store, max_age=DEFAULT_MAX_AGE_SECONDS, selector=Selector(host=this_host()))
    finally:
        store.close()
    if not verdict.healthy:
        raise Unhealthy(verdict.why)


def check_beat() -> None:
    from cancelq.core.settings import load_settings
    from cancelq.store.connections import ping

    try:
        pid = int(BEAT_PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"beat is not running ({BEAT_PIDFILE}: {exc})") from None
    ping(load_settings())


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
    "web": lambda: check_http(WEB_URL),
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
