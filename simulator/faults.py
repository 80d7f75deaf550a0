"""Injected faults: random ones for the whole API, scripted ones per event.

The documented API never answers 429, 502-504 or hangs, but a real deployment behind
gateways does, and the pipeline's retry policy is only as good as the failures it was
tested against. Two sources, both decided before any of the API's own checks run, the way
a gateway answers before the application sees the request:

* :class:`FaultConfig` - global rates, drawn per request. ``hang_rate``, ``error_rate`` and
  ``throttle_rate`` share one draw (so each is exactly the fraction it says and their sum
  must be <= 1). ``lost_response_rate`` is drawn separately, and only on an answer that
  would have been 200: the cancel is applied, the client sees a 500.
* :class:`ScriptBook` - a queue of forced answers per event id, popped one per call, for
  tests that need "fail twice, then succeed" without any randomness. A scripted call skips
  the global draws.
"""

from __future__ import annotations

import dataclasses
import enum
import http
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

DEFAULT_HANG_SECONDS = 3600.0
"""A hang outlasts any sane client timeout; the request is dropped if the client leaves."""

THROTTLE_STATUSES = frozenset({429, 503})

_RATE_FIELDS = ("error_rate", "lost_response_rate", "hang_rate", "throttle_rate")
_GATEWAY_RATE_FIELDS = ("hang_rate", "error_rate", "throttle_rate")
_NON_NEGATIVE_FIELDS = ("latency_ms", "latency_jitter_ms", "hang_seconds")


class FaultConfigError(ValueError):
    """A fault setting that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Global fault settings. All zero (the default) means the documented API, untouched."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    lost_response_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = DEFAULT_HANG_SECONDS
    throttle_rate: float = 0.0
    throttle_status: int = 429
    retry_after: int | None = None
    """Seconds sent as ``Retry-After`` with throttled answers; ``None`` sends no header."""

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultConfigError(f"{name} must be within [0, 1], got {value}")
        gateway_total = sum(getattr(self, name) for name in _GATEWAY_RATE_FIELDS)
        if gateway_total > 1.0 + 1e-9:
            raise FaultConfigError(
                f"hang_rate + error_rate + throttle_rate must be <= 1, got {gateway_total}"
            )
        for name in _NON_NEGATIVE_FIELDS:
            if getattr(self, name) < 0:
                raise FaultConfigError(f"{name} must be >= 0")
        if self.throttle_status not in THROTTLE_STATUSES:
            raise FaultConfigError(
                f"throttle_status must be one of {sorted(THROTTLE_STATUSES)}, "
                f"got {self.throttle_status}"
            )
        if self.retry_after is not None and self.retry_after < 0:
            raise FaultConfigError("retry_after must be >= 0")

    def updated(self, changes: Mapping[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied (a JSON partial update); bad keys or values raise."""
        fields = {f.name for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise FaultConfigError(f"unknown fault setting {name!r}")
            clean[name] = _check_type(name, value)
        return dataclasses.replace(self, **clean)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def latency_seconds(self, draw: float) -> float:
        """Added delay for one request, ``draw`` being uniform in [0, 1)."""
        return (self.latency_ms + self.latency_jitter_ms * draw) / 1000.0

    def gateway_fault(self, draw: float) -> GatewayFault | None:
        """Which gateway fault, if any, a request gets for a uniform ``draw`` in [0, 1)."""
        threshold = 0.0
        for fault, rate in (
            (GatewayFault.HANG, self.hang_rate),
            (GatewayFault.ERROR, self.error_rate),
            (GatewayFault.THROTTLE, self.throttle_rate),
        ):
            threshold += rate
            if draw < threshold:
                return fault
        return None

    @property
    def has_gateway_faults(self) -> bool:
        return self.hang_rate > 0 or self.error_rate > 0 or self.throttle_rate > 0


class GatewayFault(enum.Enum):
    """A global fault answered before the API's own checks."""

    HANG = "hang"
    """Sleep ``hang_seconds``, then carry on normally (or drop it if the client leaves)."""
    ERROR = "error"
    """Answer 500 without touching state."""
    THROTTLE = "throttle"
    """Answer ``throttle_status`` with ``Retry-After: retry_after``."""


def _check_type(name: str, value: object) -> object:
    # bool is an int subclass: reject it explicitly so `true` never becomes a rate of 1.
    if isinstance(value, bool):
        raise FaultConfigError(f"{name} must be a number, got a boolean")
    if name in ("throttle_status", "retry_after"):
        if value is None and name == "retry_after":
            return None
        if not isinstance(value, int):
            raise FaultConfigError(f"{name} must be an integer")
        return value
    if not isinstance(value, int | float):
        raise FaultConfigError(f"{name} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class ForcedStatus:
    """A scripted error answer: ``status`` with the generic error body, nothing applied."""

    status: int
    retry_after: int | None = None


ScriptedKind: TypeAlias = Literal["hang", "lost", "ok_bad_body", "bad_gzip", "deep_json",
                                  "drip"]
"""``hang``: sleep ``hang_seconds`` then answer normally. ``lost``: process normally (a valid
cancel is applied) but answer 500. ``ok_bad_body``: 200 with an undocumented body, nothing
applied. ``bad_gzip`` and ``deep_json``: process normally, but answer with a body the client
cannot read: ``content-encoding: gzip`` over bytes that are not gzip, or JSON nested deeper
than any parser goes. ``drip``: nothing applied; a 200 whose body never ends, one byte
every ``DRIP_SECONDS`` (each within any read timeout) until the client leaves."""

ScriptedResponse: TypeAlias = ForcedStatus | ScriptedKind

_KINDS: frozenset[str] = frozenset({"hang", "lost", "ok_bad_body", "bad_gzip", "deep_json",
                                    "drip"})
#: Seconds between two bytes of a ``drip`` answer.
DRIP_SECONDS = 0.5


def parse_scripted(item: object) -> ScriptedResponse:
    """Read one script entry: ``500``, ``{"status": 429, "retry_after": 2}`` or a kind name."""
    if isinstance(item, str):
        if item not in _KINDS:
            raise FaultConfigError(f"unknown scripted response {item!r}")
        kind: ScriptedKind = item  # type: ignore[assignment]
        return kind
    if isinstance(item, Mapping):
        if not set(item) <= {"status", "retry_after"} or "status" not in item:
            raise FaultConfigError('a scripted object needs "status", optionally "retry_after"')
        status, retry_after = item["status"], item.get("retry_after")
    else:
        status, retry_after = item, None
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultConfigError(f"a scripted status must be an integer in 400-599, got {status!r}")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
    ):
        raise FaultConfigError("retry_after must be a non-negative integer")
    return ForcedStatus(status, retry_after)


def scripted_to_json(response: ScriptedResponse) -> object:
    if isinstance(response, ForcedStatus):
        if response.retry_after is None:
            return response.status
        return {"status": response.status, "retry_after": response.retry_after}
    return response


class ScriptBook:
    """Per-event queues of forced answers; each call naming the event pops one."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[ScriptedResponse]] = {}

    def push(self, event_id: str, responses: Iterable[ScriptedResponse]) -> int:
        """Append to the event's queue; returns how many answers are now queued for it."""
        queue = self._queues.setdefault(event_id, deque())
        queue.extend(responses)
        if not queue:
            del self._queues[event_id]
            return 0
        return len(queue)

    def pop(self, event_id: str) -> ScriptedResponse | None:
        queue = self._queues.get(event_id)
        if queue is None:
            return None
        response = queue.popleft()
        if not queue:
            del self._queues[event_id]
        return response

    def pending(self, event_id: str) -> list[ScriptedResponse]:
        return list(self._queues.get(event_id, ()))

    def clear(self) -> None:
        self._queues.clear()


def error_message(status: int) -> str:
    """The ``message`` of a forced error body: the documented one for 500, else the reason."""
    if status == 500:
        return "Internal error"
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
