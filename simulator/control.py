"""A small synchronous client for the simulator's ``/_sim/`` control API.

Tests, the demo and benchmarks drive a running simulator (subprocess or thread) with it:
seed events, script failures, inject faults, then read back what the pipeline did. It only
depends on httpx, so importing it never pulls in the server.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypedDict, cast

import httpx

from simulator.state import NIL_CASE

ScriptItem = int | str | Mapping[str, int]
"""``500``, ``"hang"``, ``"lost"``, ``"ok_bad_body"``, ``"bad_gzip"``, ``"deep_json"``,
``"drip"`` or ``{"status": 429, "retry_after": 2}``."""


class Stats(TypedDict):
    total: int
    by_status: dict[str, int]
    by_event: dict[str, int]
    by_case: dict[str, int]
    in_flight: int
    calls_dropped: int


class CallRecord(TypedDict):
    time: float
    """``time.monotonic()`` in the simulator's process at arrival (same clock on Linux)."""
    case_id: str
    event_id: str | None
    status: int
    """499 means a hung request whose client disconnected: no answer was sent."""
    fault: str | None
    scripted: bool
    applied: bool


class EventState(TypedDict):
    case_id: str
    event_id: str
    agent_name: str
    cancelled: bool


class _EventSpecRequired(TypedDict):
    case_id: str
    event_id: str


class EventSpec(_EventSpecRequired, total=False):
    agent_name: str
    cancelled: bool




class SimulatorControlError(RuntimeError):
    """The control API refused a request (bad payload, unknown route)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator control API answered {status}: {message}")
        self.status = status


class SimulatorControl:
    """Client for one simulator at ``base_url`` (e.g. ``http://127.0.0.1:8360``)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/_sim", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def health(self) -> bool:
        """True if the simulator answers; never raises for a server that is not up yet."""
        try:
            return self._http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll :meth:`health` until it answers; raise :class:`TimeoutError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.health():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"simulator at {self.base_url} not ready after {timeout}s")
            time.sleep(0.05)

    def stats(self, *, probes: bool = False) -> Stats:
        """The counters; without `probes`, less the key probes to the nil case (as `calls`)."""
        stats = cast(Stats, self._call("GET", "/stats"))
        if probes:
            return stats
        nil = [c for c in self.calls(probes=True) if c.get("case_id") == NIL_CASE]
        for call in nil:
            status = str(call["status"])
            stats["by_status"][status] = stats["by_status"].get(status, 0) - 1
            if stats["by_status"][status] <= 0:
                del stats["by_status"][status]
        stats["total"] -= len(nil)
        stats["by_case"].pop(NIL_CASE, None)
        stats["by_event"].pop(NIL_CASE, None)
        return stats

    def calls(self, event_id: str | None = None, *, probes: bool = False) -> list[CallRecord]:
        """The calls received; without `probes`, not those to the nil case: every worker
        probes its key there at start (and `cancelq doctor` does), which cancels nothing."""
        params = {"event_id": event_id} if event_id is not None else None
        calls = cast(list[CallRecord], self._call("GET", "/calls", params=params))
        return calls if probes else [c for c in calls if c.get("case_id") != NIL_CASE]

    def reset(self, state: bool = False) -> None:
        """Clear calls, scripts and faults (back to none); with ``state=True`` all events too."""
        self._call("POST", "/reset", json={"state": state})

    def faults(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/faults"))

    def set_faults(self, **changes: float | int | None) -> dict[str, Any]:
        """Partially update the fault config (e.g. ``error_rate=0.1``); returns all of it."""
        return cast(dict[str, Any], self._call("POST", "/faults", json=changes))

    def add_event(
        self,
        case_id: str,
        event_id: str,
        *,
        agent_name: str = "custom",
        cancelled: bool = False,
    ) -> None:
        self.add_events(
            [
                {
                    "case_id": case_id,
                    "event_id": event_id,
                    "agent_name": agent_name,
                    "cancelled": cancelled,
                }
            ]
        )

    def add_events(self, events: Iterable[EventSpec]) -> int:
        """Create or overwrite events (and their cases); returns how many."""
        result = self._call("POST", "/events", json={"events": list(events)})
        return int(cast(dict[str, Any], result)["upserted"])

    def event(self, event_id: str) -> EventState | None:
        """The event's current state, or None if the simulator does not know it."""
        try:
            return cast(EventState, self._call("GET", f"/events/{event_id}"))
        except SimulatorControlError as exc:
            if exc.status == 404:
                return None
            raise

    def script(self, event_id: str, responses: Sequence[ScriptItem]) -> int:
        """Queue forced answers for the event's next calls; returns the queue length."""
        result = self._call(
            "POST", "/script", json={"event_id": event_id, "responses": list(responses)}
        )
        return int(cast(dict[str, Any], result)["queued"])

    def state(self) -> dict[str, Any]:
        """Every case and event, in the seed-file format."""
        return cast(dict[str, Any], self._call("GET", "/state"))

    def _call(self, method: str, path: str, **kwargs: Any) -> object:
        response = self._http.request(method, path, **kwargs)
        if response.status_code != 200:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise SimulatorControlError(response.status_code, message)
        return response.json()


_LISTENING = re.compile(r"simulator listening on (http://\S+)")


def spawn_simulator(
    *args: str, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m simulator --port 0 ARGS` as a child; return it and its base URL.

    The simulator prints one "listening on" line once its socket accepts; this is the one
    place that reads it. Raises `RuntimeError` (after killing the child) if it does not start.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = _LISTENING.search(line)
    if match is None:
        process.kill()
        process.wait()
        raise RuntimeError(f"simulator did not start: {line.strip()!r}")
    return process, match.group(1)
