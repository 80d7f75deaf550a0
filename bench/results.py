"""What a benchmark run measured: every repeat's value, and the medians the report shows."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Results:
    """Values by (table, row, metric), one per repeat; plus free-form details per table."""

    values: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, table: str, row: str, metric: str, value: float) -> None:
        self.values.setdefault((table, row, metric), []).append(float(value))
        print(f"  {table} | {row} | {metric}: {value:,.3f}", flush=True)

    def median(self, table: str, row: str, metric: str) -> float | None:
        values = self.values.get((table, row, metric))
        return statistics.median(values) if values else None

    def count(self, table: str, row: str, metric: str) -> int:
        return len(self.values.get((table, row, metric), []))

    def rows(self, table: str) -> list[str]:
        seen: dict[str, None] = {}
        for t, row, _ in self.values:
            if t == table:
                seen.setdefault(row, None)
        return list(seen)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
