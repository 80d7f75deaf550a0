"""`cancelq demo`: the whole pipeline on this machine, in about twenty seconds."""

from __future__ import annotations

import sys

import click

from producers.cli.common import one_line_errors


@click.command()
@one_line_errors
def demo() -> None:
    """Start a simulator and a worker, run a mixed batch, show outcomes and the audit."""
    from producers.dev.demo import run_demo

    sys.exit(run_demo())
