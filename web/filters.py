"""The jobs filters of `cancelq audit` (case, event, run, outcome, state, since/until), read
from a query string into the store's `Query`, for pages and API alike.

Every value is checked before any Redis key is built from it: ids must be canonical UUIDs,
outcome and state known names, times ISO 8601 (no zone = UTC) or relative (`15m`, `2h`,
`1d`). A bad value is `InvalidInput` naming the field: a 400, never a 500.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cancelq.core.contract import canonical_uuid
from cancelq.core.errors import InvalidInput
from cancelq.core.lifecycle import Outcome, State
from cancelq.store.records import Query

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
OUTCOMES = tuple(o.value for o in Outcome)
STATES = tuple(s.value for s in State)
MAX_RUN_CHARS = 200


def parse_time(text: str | None, field: str, now: float | None = None) -> float | None:
    """ISO 8601 (no zone: UTC) or `15m` / `2h` / `1d` ago; empty: None."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    relative = _RELATIVE.match(value.lower())
    if relative:
        seconds = float(relative.group(1)) * _UNIT[relative.group(2)]
        return (time.time() if now is None else now) - seconds
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(field, f"not a time (ISO 8601, or 15m / 2h / 1d): {value[:40]!r}")\
            from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _uuid(text: str | None, field: str) -> str | None:
    return canonical_uuid(text.strip(), field) if text and text.strip() else None


def _choice(text: str | None, field: str, allowed: tuple[str, ...]) -> str | None:
    if not text:
        return None
    if text not in allowed:
        raise InvalidInput(field, f"must be one of {', '.join(allowed)}: {text[:40]!r}")
    return text


@dataclass(frozen=True, slots=True)
class JobFilters:
    """What the form or query string said, as typed (to fill the form again)."""

    case: str = ""
    event: str = ""
    run: str = ""
    outcome: str = ""
    state: str = ""
    since: str = ""
    until: str = ""

    def query(self, limit: int) -> Query:
        run = self.run.strip() or None
        if run is not None and len(run) > MAX_RUN_CHARS:
            raise InvalidInput("run", f"longer than {MAX_RUN_CHARS} characters")
        return Query(
            case_id=_uuid(self.case, "case"),
            event_id=_uuid(self.event, "event"),
            run_id=run,
            outcome=_choice(self.outcome, "outcome", OUTCOMES),
            state=_choice(self.state, "state", STATES),
            since=parse_time(self.since, "since"),
            until=parse_time(self.until, "until"),
            limit=limit,
        )

    def params(self) -> dict[str, str]:
        """The non-empty filters, for links to other pages of the same listing."""
        return {k: v for k, v in (("case", self.case), ("event", self.event),
                                  ("run", self.run), ("outcome", self.outcome),
                                  ("state", self.state), ("since", self.since),
                                  ("until", self.until)) if v}
