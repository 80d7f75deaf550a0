"""`cancelq demo`: the whole pipeline on this machine, in about twenty seconds."""

from __future__ import annotations

import sys

import click

from producers.cli.common import epilog, one_line_errors


@click.command(epilog=epilog(
    "cancelq demo                        # a private Redis if none answers",
    "REDIS_URL=redis://host:6379 cancelq demo  # uses database 15 there",
    notes=["Keys it leaves in an existing Redis expire after a day."],
))
@one_line_errors
def demo() -> None:
    """Start a simulator and a worker, run a mixed batch, show outcomes and the audit."""
    from producers.dev.demo import run_demo

    sys.exit(run_demo())
