"""Which Redis errors mean "this message can never be recorded", and where such a message goes.

A reply error (`redis.exceptions.ResponseError`) that is not about the server being busy,
loading, read-only, out of memory or failing over says the same thing every time the same
message comes back: WRONGTYPE on a key the message names, a script error on its arguments.
Handing it back to the broker would loop forever, holding a worker thread each time; it is
set aside instead (`AuditStore.set_aside`, the `poison` hash) and logged once. Every other
Redis error means Redis is away for now: the message is handed back.
"""

from __future__ import annotations

import re

from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

#: reply codes of a Redis that is there but cannot take the write just now
TRANSIENT_CODES = ("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "READONLY", "OOM", "NOSCRIPT",
                   "CLUSTERDOWN", "NOREPLICAS", "MISCONF", "NOAUTH", "NOPERM", "WRONGPASS")
_TRANSIENT = re.compile(rf"(?:^|error: )(?:{'|'.join(TRANSIENT_CODES)})\b")


def is_poison(exc: BaseException) -> bool:
    """True when Redis refused this message's command itself, and would again."""
    if not isinstance(exc, ResponseError):
        return False  # connection lost, timeout: Redis is away, not the message bad
    if isinstance(exc, ReadOnlyError | OutOfMemoryError | NoScriptError):
        return False
    return _TRANSIENT.search(str(exc)) is None
