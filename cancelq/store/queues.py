"""The queue topology: queue names and the Redis lists kombu keeps for them.

Real-time requests go to `REALTIME_QUEUE`, bulk runs to `BULK_QUEUE`. kombu's Redis transport
splits each queue into one list per priority step; producers push to those lists directly,
so the list names are computed here exactly as kombu computes them.
"""

from __future__ import annotations

REALTIME_QUEUE = "cancellations"
BULK_QUEUE = "cancellations.bulk"
PRIORITY_SEPARATOR = "\x06\x16"
#: kombu's Redis transport keeps one list per step; a worker listens on these lists only.
PRIORITY_STEPS = (0, 3, 6, 9)


def queue_key(queue: str, priority: int = 0) -> str:
    """kombu's list name for a queue at a priority (0 is the plain queue name).

    As kombu does it: the priority is clamped to 0-9, then rounded down to a step, so a
    message lands in a list a worker actually listens on.
    """
    clamped = max(0, min(9, priority))
    step = max(s for s in PRIORITY_STEPS if s <= clamped)
    return f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue
