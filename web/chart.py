"""The overview's chart, drawn on the server as SVG shapes: calls per minute by HTTP status.

No script and no chart library: the page carries `<rect>`s with sizes as attributes (allowed
by the CSP, which refuses inline styles) and CSS classes for the colours, one per status
class (2xx, 4xx, 5xx, no answer). Each bar's `<title>` names the exact statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cancelq.core.clock import iso_utc
from cancelq.ops.stats import MinuteCalls

WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 40, 20, 10
#: stacking order, bottom first
CLASSES = ("s2xx", "s4xx", "s5xx", "snone")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    peak: int
    legend: tuple[tuple[str, str, int], ...]  # (css class, status, calls)
    first_label: str
    last_label: str
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    base: int = HEIGHT - BOTTOM
    top: int = TOP


def status_class(status: str) -> str:
    return f"s{status[0]}xx" if status[:1] in "2345" and status.isdigit() else "snone"


def draw(minutes: Sequence[MinuteCalls]) -> Chart:
    """Stacked bars, one per minute, scaled to the busiest minute."""
    peak = max((m.total for m in minutes), default=0)
    slot = (WIDTH - LEFT) / max(1, len(minutes))
    scale = (HEIGHT - BOTTOM - TOP) / peak if peak else 0.0
    bars: list[Bar] = []
    totals: dict[str, int] = {}
    for index, minute in enumerate(minutes):
        y = float(HEIGHT - BOTTOM)
        ordered = sorted(minute.by_status.items(),
                         key=lambda item: (CLASSES.index(status_class(item[0])), item[0]))
        title = f"{iso_utc(minute.started_at)}: " + (
            ", ".join(f"{status} x{n}" for status, n in ordered) or "no calls")
        for status, count in ordered:
            totals[status] = totals.get(status, 0) + count
            height = count * scale
            y -= height
            bars.append(Bar(round(LEFT + index * slot + 1, 2), round(y, 2),
                            round(max(1.0, slot - 2), 2), round(height, 2),
                            status_class(status), title))
    legend = tuple((status_class(s), s, n) for s, n in sorted(totals.items()))
    return Chart(tuple(bars), peak, legend, _label(minutes, 0), _label(minutes, -1),
                 sum(totals.values()))


def _label(minutes: Sequence[MinuteCalls], index: int) -> str:
    if not minutes:
        return ""
    stamp = iso_utc(minutes[index].started_at) or ""
    return stamp[11:16]
