"""`cancelq doctor`: effective settings (secrets masked) and one line per check.

Exit 0 when every check passed (warnings allowed), 1 when one failed, 2 when the
configuration itself is wrong (one line naming the variable, nothing checked).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence

import click

from cancelq.ops.doctor import Check, effective_settings, failed, run_checks
from producers.cli.common import EXIT_FAILED, epilog, one_line_errors, print_json, store_from_env
from producers.cli.render import shorten_middle

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "bright_black"}


@click.command(epilog=epilog(
    "cancelq doctor",
    "cancelq doctor --json | jq '.checks[]'",
))
@click.option("--json", "as_json", is_flag=True,
              help="Print {settings, checks, ok} as one JSON object.")
@one_line_errors
def doctor(as_json: bool) -> None:
    """Check the configuration, Redis, the queues, the workers, Care360 and the web console.

    Care360 gets two requests that cannot cancel anything (an unknown action on
    the nil case and event ids), one without the key and one with it, to tell
    whether the API answers and whether it accepts the key. Secrets are never
    printed. A warning does not fail the check; exit 1 means one check failed.
    """
    with store_from_env(probe_first=False) as (settings, store):
        shown = effective_settings(settings)
        checks = run_checks(settings, store)
    if as_json:
        print_json({"settings": shown, "checks": [c.to_json() for c in checks],
                    "ok": not failed(checks)})
    else:
        width = shutil.get_terminal_size((80, 24)).columns
        for line in render(shown, checks, width):
            click.echo(line)
    sys.exit(EXIT_FAILED if failed(checks) else 0)


def render(shown: dict[str, str | None], checks: Sequence[Check], width: int) -> Iterator[str]:
    """Plain lines that fit `width` columns: long values wrap under their own column."""
    yield click.style("settings", bold=True)
    label = max(map(len, shown), default=0) + 1
    for name, value in shown.items():
        yield from _wrapped(f"  {name:<{label}}", "-" if value is None else value, width)
    yield ""
    yield click.style("checks", bold=True)
    for check in checks:
        status = click.style(f"{check.status:<4}", fg=STATUS_STYLE[check.status], bold=True)
        head = f"  {status} {check.name:<8} "
        plain = len(f"  {check.status:<4} {check.name:<8} ")
        lines = _wrapped(" " * plain, check.summary, width)
        first = next(lines)
        yield head + first[plain:]
        yield from lines
        for detail in check.details:
            yield from _wrapped(" " * (plain + 2), detail, width)


def _wrapped(prefix: str, text: str, width: int) -> Iterator[str]:
    """Wrapped between words only: a host name, a URL or a node is never split across
    lines (it is copied from here); one longer than the room is shortened in the middle
    (`--json` has it whole)."""
    room = max(20, width - len(prefix))
    words = " ".join(shorten_middle(word, room) for word in text.split(" "))
    parts = textwrap.wrap(words, room, break_on_hyphens=False, break_long_words=False) or [""]
    yield prefix + parts[0]
    for part in parts[1:]:
        yield " " * len(prefix) + part
