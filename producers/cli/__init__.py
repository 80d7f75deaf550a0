"""`cancelq`: the operator's command line. One module per command family.

Exit codes: 0 done, 1 failed, 2 bad input or configuration (one line on stderr, nothing
sent), 3 `--wait` ran out of time.
"""

from __future__ import annotations

import click

from producers.cli import bulk, demo, dlq, doctor, health, jobs, metrics, stats
from simulator.cli import simulator_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Cancel Care360 calendar events through the queue, and inspect the audit trail."""


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
