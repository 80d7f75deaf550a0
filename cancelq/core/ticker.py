"""A background thread that does one thing every few seconds until told to stop.

The worker has three (the retry scheduler, the telemetry heartbeat, the lease keeper) and they
share the same needs: outlive any outage of what they call (a Redis restart must pause them,
not end them), say so in one line rather than a traceback every interval (a Redis that is
gone for a minute printed hundreds of them), keep a real bug loud (any other exception is
logged with its traceback), and stop at once when asked (a shutdown must not wait out an
interval).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("cancelq.ticker")


class Ticker:
    """Calls `tick` every `interval` seconds on a daemon thread named `name`.

    `outage`: the exception types of an unavailable `dependency`, logged as one line naming
    the class (once until a tick succeeds again) and followed by a pause of `pause` seconds.
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[], object],
        *,
        interval: float,
        outage: tuple[type[BaseException], ...] = (),
        dependency: str = "Redis",
        pause: float | None = None,
        first_tick_after_interval: bool = False,
    ) -> None:
        self.name = name
        self.tick = tick
        self.interval = interval
        self.outage = outage
        self.dependency = dependency
        self.pause = interval if pause is None else pause
        self.delay_first = first_tick_after_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        """Start the thread if it is not running; a stopped ticker stays stopped."""
        if not self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to `timeout` seconds for its current tick."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run_once(self) -> float:
        """One tick, its failure logged; returns how long to wait before the next."""
        try:
            self.tick()
        except self.outage as exc:
            if not self._failing:
                log.warning("%s: %s unavailable (%s); retrying every %.1fs", self.name,
                            self.dependency, type(exc).__name__, self.pause)
            self._failing = True
            return self.pause
        except Exception:  # the loop must outlive anything: a bug is logged loudly, not fatal
            log.exception("%s: tick failed; will retry", self.name)
            return self.pause
        if self._failing:
            log.info("%s: working again", self.name)
        self._failing = False
        return self.interval

    def _loop(self) -> None:
        wait = self.interval if self.delay_first else 0.0
        while not self._stop.wait(wait):
            wait = self.run_once()
