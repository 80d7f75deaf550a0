"""`cancelq`: the operator's command line. One module per command family.

Exit codes, the same for every verb: 0 ok, 1 the operation failed or the outcome is not
the one waited for, 2 usage or configuration error (one line on stderr, nothing done),
3 timed out. Shell completion is click's: `eval "$(_CANCELQ_COMPLETE=bash_source cancelq)"`.
"""

from __future__ import annotations

import click

from producers.cli import (
    archive,
    bulk,
    demo,
    dlq,
    doctor,
    health,
    jobs,
    metrics,
    stats,
    upgrade,
    web,
)
from producers.cli.common import EXIT_USAGE, CancelqGroup, epilog, fail
from simulator.cli import simulator_command


@click.group(
    cls=CancelqGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=epilog(
        "cancelq enqueue CASE_ID EVENT_ID --reason 'duplicate booking'",
        "cancelq status 3f2a9c1e --wait 60",
        "cancelq audit --since 2h",
        "cancelq bulk cleanup.csv && cancelq run bulk-... --follow",
        "cancelq dlq list",
        "cancelq stats --watch 2",
        notes=['Shell completion (bash): eval "$(_CANCELQ_COMPLETE=bash_source cancelq)"',
               "(zsh_source, fish_source for zsh and fish; docs/cli.md)."],
    ),
)
@click.version_option(package_name="cancelq", prog_name="cancelq", message="%(prog)s %(version)s")
def main() -> None:
    """Cancel Care360 calendar events through the queue, and inspect the audit trail."""


@click.command(hidden=True, add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def flower() -> None:
    """Flower is Celery's own command, not a cancelq verb: say which one to run (exit 2)."""
    fail("flower is started by Celery: celery -A worker flower --port=5555 "
         "(needs FLOWER_BASIC_AUTH; docs/operations.md)", EXIT_USAGE)


simulator_command.epilog = epilog(
    "cancelq simulator --port 8080 --api-key dev-key",
    "cancelq simulator --port 0 --error-rate 0.2 --latency-ms 50 --access-log",
)

main.add_command(jobs.enqueue)
main.add_command(jobs.status)
main.add_command(jobs.audit)
main.add_command(simulator_command, name="simulator")
main.add_command(dlq.dlq)
main.add_command(stats.stats)
main.add_command(demo.demo)
main.add_command(bulk.bulk)
main.add_command(bulk.run)
main.add_command(bulk.runs)
main.add_command(doctor.doctor)
main.add_command(health.health)
main.add_command(metrics.metrics)
main.add_command(archive.archive)
main.add_command(web.web)
main.add_command(flower)
main.add_command(upgrade.migrate)
