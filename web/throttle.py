"""Failed sign-ins slowed down: after `LIMIT` failures for one name from one client within
`WINDOW_SECONDS`, that pair is refused until its oldest failure leaves the window.

Per (name, client) rather than per name, so a stranger guessing at `ada` cannot lock `ada`
out from her own desk. In memory, per process: a guard against guessing through the form or
the API, not an audit (the proxy's access log is that; docs/web.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque

LIMIT = 10
WINDOW_SECONDS = 900.0
#: pairs remembered at most (the oldest forgotten first): bounded memory under a flood
MAX_KEYS = 10_000


class Throttle:
    def __init__(self, limit: int = LIMIT, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, name: str, client: str) -> float:
        """0 when a try is allowed; else how long until it is."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get((name, client))
            if not failures:
                return 0.0
            while failures and now - failures[0] > self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0.0
            return self.window - (now - failures[0])

    def failed(self, name: str, client: str) -> None:
        with self._lock:
            if len(self._failures) >= MAX_KEYS and (name, client) not in self._failures:
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault((name, client), deque(maxlen=self.limit)).append(
                time.monotonic())

    def succeeded(self, name: str, client: str) -> None:
        with self._lock:
            self._failures.pop((name, client), None)
