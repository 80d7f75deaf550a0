"""What the simulator remembers: cases with their calendar events, and the calls it answered.

Everything lives in plain dicts owned by one asyncio event loop. Every change is a
synchronous step between two ``await``s, so a check-then-cancel can never interleave with
another request: an event is cancelled at most once, which is the property the pipeline's
tests lean on.

Identifiers are canonical lower-case hyphenated UUID strings. The real API validates them the
way class-validator's ``isUUID`` does (8-4-4-4-12 hex digits, any version nibble; the
vendor's own example case id has version nibble 7), so :func:`parse_uuid` does the same
rather than trusting :class:`uuid.UUID`, which also accepts braces, URNs and bare hex.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CUSTOM_AGENT = "custom"
"""The only ``agentName`` whose events the API lets a client cancel."""

DEFAULT_CALL_LOG_LIMIT = 1_000_000
"""Calls kept for ``/_sim/calls``; older ones are dropped (counters keep counting)."""

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

#: The case a key probe is sent to (`cancelq.ops.doctor.NIL_UUID`): never a real one.
NIL_CASE = "00000000-0000-0000-0000-000000000000"


def parse_uuid(value: object) -> str | None:
    """Return ``value`` as a canonical UUID string, or ``None`` if the API would reject it."""
    if isinstance(value, str) and _UUID_RE.fullmatch(value):
        return value.lower()
    return None


@dataclass(slots=True)
class CalendarEvent:
    """One calendar event; ``is_deleted`` is the API's soft-delete flag (``isDeleted``)."""

    id: str
    case_id: str
    agent_name: str = CUSTOM_AGENT
    is_deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The shape served by ``GET /_sim/events/{id}``."""
        return {
            "case_id": self.case_id,
            "event_id": self.id,
            "agent_name": self.agent_name,
            "cancelled": self.is_deleted,
        }


class SeedError(ValueError):
    """A seed file or ``/_sim/events`` payload that does not describe valid cases/events."""


class SimState:
    """Cases and their events. An event id belongs to exactly one case."""

    def __init__(self) -> None:
        self._cases: dict[str, dict[str, CalendarEvent]] = {}
        self._events: dict[str, CalendarEvent] = {}

    def __len__(self) -> int:
        return len(self._events)

    def has_case(self, case_id: str) -> bool:
        return case_id in self._cases

    def add_case(self, case_id: str) -> None:
        """Create an empty case (no-op if it exists). ``case_id`` must be canonical."""
        self._cases.setdefault(_require_uuid(case_id, "case id"), {})

    def event(self, event_id: str) -> CalendarEvent | None:
        """The event with this id, whatever its case."""
        return self._events.get(event_id)

    def event_in_case(self, case_id: str, event_id: str) -> CalendarEvent | None:
        """The event only if it belongs to this case: the API answers "not found" otherwise."""
        events = self._cases.get(case_id)
        return None if events is None else events.get(event_id)

    def is_known_event(self, event_id: str) -> bool:
        return event_id in self._events

    def upsert_event(
        self,
        case_id: str,
        event_id: str,
        *,
        agent_name: str = CUSTOM_AGENT,
        is_deleted: bool = False,
    ) -> CalendarEvent:
        """Create or overwrite an event, creating its case; an existing event may change case."""
        case_id = _require_uuid(case_id, "case id")
        event_id = _require_uuid(event_id, "event id")
        old = self._events.get(event_id)
        if old is not None and old.case_id != case_id:
            del self._cases[old.case_id][event_id]
        event = CalendarEvent(event_id, case_id, agent_name, is_deleted)
        self._cases.setdefault(case_id, {})[event_id] = event
        self._events[event_id] = event
        return event

    def clear(self) -> None:
        self._cases.clear()
        self._events.clear()

    def events(self) -> Iterator[CalendarEvent]:
        return iter(self._events.values())

    def to_seed(self) -> dict[str, Any]:
        """The whole state in the seed-file format, so a dump can be loaded back."""
        return {
            "cases": [
                {
                    "id": case_id,
                    "events": [
                        {"id": e.id, "agentName": e.agent_name, "isDeleted": e.is_deleted}
                        for e in events.values()
                    ],
                }
                for case_id, events in self._cases.items()
            ]
        }

    def load_seed(self, data: object) -> None:
        """Add the cases of a seed document (see :meth:`to_seed`). Unknown keys are errors."""
        if not isinstance(data, Mapping) or set(data) != {"cases"}:
            raise SeedError('seed must be an object with exactly one key, "cases"')
        cases = data["cases"]
        if not isinstance(cases, list):
            raise SeedError('"cases" must be a list')
        for case in cases:
            if not isinstance(case, Mapping) or not set(case) <= {"id", "events"}:
                raise SeedError('each case must be an object with keys "id" and "events"')
            case_id = _require_uuid(case.get("id"), "case id")
            self.add_case(case_id)
            events = case.get("events", [])
            if not isinstance(events, list):
                raise SeedError(f'case {case_id}: "events" must be a list')
            for item in events:
                if not isinstance(item, Mapping) or not set(item) <= {
                    "id",
                    "agentName",
                    "isDeleted",
                }:
                    raise SeedError(
                        f'case {case_id}: each event must be an object with keys "id", '
                        '"agentName", "isDeleted"'
                    )
                agent_name = item.get("agentName", CUSTOM_AGENT)
                is_deleted = item.get("isDeleted", False)
                if not isinstance(agent_name, str) or not isinstance(is_deleted, bool):
                    raise SeedError(
                        f"case {case_id}: agentName must be a string, isDeleted a boolean"
                    )
                self.upsert_event(
                    case_id,
                    _require_uuid(item.get("id"), "event id"),
                    agent_name=agent_name,
                    is_deleted=is_deleted,
                )

    def load_seed_file(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SeedError(f"cannot read seed file {path}: {exc}") from exc
        self.load_seed(data)

    def generate(self, cases: int, events_per_case: int, *, seed: int | None = None) -> None:
        """Add ``cases`` cases of ``events_per_case`` custom, live events each.

        With a ``seed`` the ids are reproducible, so a benchmark can derive them again;
        without one, read them back from ``GET /_sim/state``.
        """
        if cases < 0 or events_per_case < 0:
            raise SeedError("case and event counts must be >= 0")
        rng = random.Random(seed)
        for _ in range(cases):
            case_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            self.add_case(case_id)
            for _ in range(events_per_case):
                self.upsert_event(case_id, str(uuid.UUID(int=rng.getrandbits(128), version=4)))


def _require_uuid(value: object, what: str) -> str:
    canonical = parse_uuid(value)
    if canonical is None:
        raise SeedError(f"{what} must be a UUID, got {value!r}")
    return canonical


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the API route, as ``/_sim/calls`` reports it (never the API key).

    ``time`` is ``time.monotonic()`` at arrival; on Linux that clock is shared by all
    processes, so a test can compare it with its own readings. ``fault`` names the injected
    fault that shaped the answer, if any; ``applied`` says whether this call cancelled the
    event (true for a 200, and for a lost response).
    """

    time: float
    case_id: str
    event_id: str | None
    status: int
    fault: str | None = None
    scripted: bool = False
    applied: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "case_id": self.case_id,
            "event_id": self.event_id,
            "status": self.status,
            "fault": self.fault,
            "scripted": self.scripted,
            "applied": self.applied,
        }


class CallLog:
    """Counters of every finished API call plus a bounded list of the calls themselves."""

    def __init__(self, limit: int = DEFAULT_CALL_LOG_LIMIT) -> None:
        self.total = 0
        self.in_flight = 0
        self.by_status: Counter[int] = Counter()
        self.by_event: Counter[str] = Counter()
        self.by_case: Counter[str] = Counter()
        self._calls: deque[Call] = deque(maxlen=limit)

    def record(self, call: Call) -> None:
        self.total += 1
        self.by_status[call.status] += 1
        self.by_case[call.case_id] += 1
        if call.event_id is not None:
            self.by_event[call.event_id] += 1
        self._calls.append(call)

    def calls(self, event_id: str | None = None) -> list[Call]:
        if event_id is None:
            return list(self._calls)
        return [c for c in self._calls if c.event_id == event_id]

    def clear(self) -> None:
        """Forget finished calls; requests still in flight keep being counted when they end."""
        self.total = 0
        self.by_status.clear()
        self.by_event.clear()
        self.by_case.clear()
        self._calls.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_event": dict(self.by_event),
            "by_case": dict(self.by_case),
            "in_flight": self.in_flight,
            "calls_dropped": self.total - len(self._calls),
        }
