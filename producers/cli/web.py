"""`cancelq web`: serve the web console; `cancelq web hash-password`: a hash for WEB_USERS.

The console refuses to start without users and a session secret: one line naming the
variable, exit 2. Its modules load only here (FastAPI, uvicorn, argon2 cost the other
verbs nothing).
"""

from __future__ import annotations

import sys

import click

from cancelq.core.settings import load_settings
from producers.cli.common import epilog, fail, one_line_errors

MAX_PASSWORD_CHARS = 1000


@click.group(invoke_without_command=True, epilog=epilog(
    "WEB_USERS_FILE=users WEB_SECRET_FILE=secret cancelq web",
    "WEB_ADDRESS=0.0.0.0:8080 cancelq web   # behind a TLS proxy only",
    "cancelq web hash-password < password.txt",
    notes=["WEB_USERS: whitespace-separated name:role:hash (role viewer or operator).",
           "WEB_SECRET (or WEB_SECRET_FILE): at least 32 characters; signs sessions."],
))
@click.pass_context
@one_line_errors
def web(ctx: click.Context) -> None:
    """Serve the web console on WEB_ADDRESS (default 127.0.0.1:8080) until stopped."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    try:
        from web.app import serve
    except ImportError as exc:
        fail(f"the web console needs its libraries ({exc.name}): pip install 'cancelq[web]'")
    serve(settings)


@web.command(name="hash-password", epilog=epilog(
    "cancelq web hash-password < password.txt",
    "printf '%s' \"$PASSWORD\" | cancelq web hash-password",
    "echo \"ada:operator:$(cancelq web hash-password < pw.txt)\"",
))
@one_line_errors
def hash_password_command() -> None:
    """Read a password from stdin (asked twice at a terminal); print its argon2 hash."""
    from web.users import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.read(MAX_PASSWORD_CHARS + 2).removesuffix("\n").removesuffix("\r")
    if not password:
        fail("password: empty (give it on stdin)")
    if len(password) > MAX_PASSWORD_CHARS:
        fail(f"password: longer than {MAX_PASSWORD_CHARS} characters")
    click.echo(hash_password(password))
