"""Flower must not start open: basic auth from `FLOWER_BASIC_AUTH`, or an explicit opt-out.

The check lives with the Celery app, so it holds wherever Flower is started from (`cd /tmp
&& celery -A worker flower` included), not in a file Flower finds by working directory.
How Flower 2.2 starts (`flower/command.py`): the `celery` command imports the app (this
package), then Flower's command applies the `FLOWER_*` variables and the command line to
tornado's global `options` by `parse_command_line`, which runs tornado's parse callbacks;
when a `--conf` file exists it reads it and parses the command line once more (the callbacks
run again), and only then builds the web app and listens. `install_flower_guard` registers
a parse callback that refuses to go on (one line on stderr, exit 2) unless Flower has basic
auth or OAuth, or `FLOWER_INSECURE_NO_AUTH=1` says so. Other processes never parse tornado
options, so the callback never runs in them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery

INSECURE_FLAG = "FLOWER_INSECURE_NO_AUTH"
_TRUE = frozenset({"1", "true", "yes", "on"})


class FlowerAuthError(Exception):
    """Flower would start without usable authentication."""


def check_auth(
    basic_auth: Sequence[str] | None, auth_regex: str | None, insecure_flag: str | None
) -> str:
    """How Flower is protected ('basic', 'oauth', 'insecure'); raises `FlowerAuthError`.

    `basic_auth` is Flower's parsed option (a list: FLOWER_BASIC_AUTH split on commas),
    so an empty variable shows up as `['']` and must not count as credentials.
    """
    pairs = [p for p in (basic_auth or []) if p]
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise FlowerAuthError(
                "FLOWER_BASIC_AUTH: expected user:password[,user2:password2] "
                "with a non-empty user and password"
            )
    if pairs:
        return "basic"
    if auth_regex:
        return "oauth"
    if (insecure_flag or "").strip().lower() in _TRUE:
        return "insecure"
    raise FlowerAuthError(
        "FLOWER_BASIC_AUTH: required (user:password); set "
        f"{INSECURE_FLAG}=1 to run Flower without authentication on a trusted machine"
    )


def enforce(options: Any, *, environ: Mapping[str, str] | None = None) -> str:
    """Check Flower's parsed `options`; exit 2 with one line if Flower would be open."""
    env = os.environ if environ is None else environ
    try:
        mode = check_auth(
            getattr(options, "basic_auth", None), getattr(options, "auth", None),
            env.get(INSECURE_FLAG),
        )
    except FlowerAuthError as exc:
        print(f"cancelq flower: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if mode == "insecure":
        print(f"cancelq flower: WARNING: no authentication ({INSECURE_FLAG}=1)",
              file=sys.stderr, flush=True)
    return mode


def install_flower_guard(app: Celery) -> Callable[[], None] | None:
    """Make Flower, when it runs this app, refuse to start without authentication."""
    del app  # Flower's options are process-wide (tornado's), like the guard
    try:
        from tornado.options import options
    except ImportError:  # no tornado, no Flower
        return None
    passes = {"conf_pending": True}

    def guard() -> None:
        conf = getattr(options, "conf", None)
        if passes["conf_pending"] and conf and os.path.isfile(os.path.abspath(conf)):
            # First pass: Flower reads this config file (which may set basic_auth) next,
            # then parses again and this runs again, on the final options.
            passes["conf_pending"] = False
            return
        enforce(options)

    options.add_parse_callback(guard)
    return guard
