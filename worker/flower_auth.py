"""Flower must not start open: basic auth from `FLOWER_BASIC_AUTH`, or an explicit opt-out;
on loopback unless an address is given; and its log lines with URL passwords masked.

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

The same callback, on the final options, makes Flower listen on 127.0.0.1 when no address
was given (`--address`, `FLOWER_ADDRESS` or the config file): Flower's own default is every
interface, IPv4 and IPv6, while its banner says `127.0.0.1`. And it puts the project's URL
masking (`cancelq.core.urls.MaskURLs`) on the handlers Flower's and tornado's loggers write
through (tornado installs them on the root logger in an earlier callback of the same parse),
so no line Flower logs shows a URL's password.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery

from cancelq.core.settings import DEFAULT_LISTEN_ADDRESS
from cancelq.core.urls import mask_logging

INSECURE_FLAG = "FLOWER_INSECURE_NO_AUTH"
#: The loggers Flower writes through: its own, tornado's, and the root their records reach.
FLOWER_LOGGERS = ("", "flower", "tornado", "tornado.access", "tornado.application",
                  "tornado.general")
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


def listen_on_loopback_by_default(options: Any) -> str:
    """Flower's address: the one given, else loopback (not Flower's every-interface '')."""
    if not getattr(options, "unix_socket", None) and not getattr(options, "address", ""):
        options.address = DEFAULT_LISTEN_ADDRESS
    return str(options.address)


def mask_flower_logs() -> None:
    """URL passwords masked on every handler Flower's and tornado's records go through."""
    for name in FLOWER_LOGGERS:
        mask_logging(logging.getLogger(name))


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
        mask_flower_logs()
        enforce(options)
        listen_on_loopback_by_default(options)

    options.add_parse_callback(guard)
    return guard
