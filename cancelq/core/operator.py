"""Who is acting, for `requested_by` and replay notes: user@host."""

from __future__ import annotations

import getpass
import socket


def operator_name() -> str:
    """Who is at the keyboard, for the replay note: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
