"""Flower must not start open: basic auth from `FLOWER_BASIC_AUTH`, or an explicit opt-out.

Flower 2.2 executes `flowerconfig.py` from its working directory (its `--conf` default)
after reading `FLOWER_*` variables and the command line, and before it listens. The
project's `flowerconfig.py` calls `require_auth` there, so `celery -A worker flower` from
the project root (the image's working directory) refuses to start without credentials.
`FLOWER_INSECURE_NO_AUTH=1` is the explicit opt-out for a laptop; nothing else opens it.
"""

from __future__ import annotations

from collections.abc import Sequence

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
