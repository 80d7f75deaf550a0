"""`cancelq health`: is the work being consumed? Exit 0 healthy, 1 not (one line why).

The liveness probe of docker-compose's worker and of any supervisor: it proves consumption
from what workers and queues leave in Redis (`cancelq.ops.health`), so it works for a
worker started any way, under any node name, from any host that reaches Redis.
"""

from __future__ import annotations

import sys

import click
import redis

from cancelq.ops.health import (
    DEFAULT_MAX_AGE_SECONDS,
    Selector,
    check,
    this_host,
)
from producers.cli.common import EXIT_FAILED, epilog, one_line_errors, print_json, store_from_env


@click.command(epilog=epilog(
    "cancelq health                     # the whole system",
    "cancelq health --this-host         # the workers of this container",
    "cancelq health --node worker@box --max-age 30",
))
@click.option("--max-age", type=click.FloatRange(min=1), default=DEFAULT_MAX_AGE_SECONDS,
              show_default=True, metavar="SECONDS",
              help="Unhealthy when a queue's head waited this long while nothing was "
                   "received, or a heartbeat is this old.")
@click.option("--node", "nodes", multiple=True, metavar="NAME",
              help="Judge this worker only (its node name, e.g. worker@host); repeatable.")
@click.option("--this-host", "this_host_only", is_flag=True,
              help="Judge the workers on this host only (a container's healthcheck).")
@click.option("--json", "as_json", is_flag=True, help="Print {healthy, why} as JSON.")
@one_line_errors
def health(max_age: float, nodes: tuple[str, ...], this_host_only: bool, as_json: bool) -> None:
    """Is the work being consumed? Exit 0 yes, 1 no, with one line saying why.

    Read from Redis: each worker's heartbeat (when it last received a message)
    and how long each queue's next job has waited. Works for a worker started
    any way. An unreachable Redis is unhealthy (exit 1).
    """
    selector = Selector(nodes=nodes, host=this_host() if this_host_only else None)
    try:
        with store_from_env() as (_, store):
            store.fail_fast()
            verdict = check(store, max_age=max_age, selector=selector)
    except redis.RedisError as exc:
        click.echo(f"unhealthy: cannot reach Redis ({type(exc).__name__})", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        print_json({"healthy": verdict.healthy, "why": verdict.why})
    else:
        click.echo(verdict.line(), err=not verdict.healthy)
    sys.exit(0 if verdict.healthy else EXIT_FAILED)
