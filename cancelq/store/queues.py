"""The queue topology: queue names and the Redis lists kombu keeps for them.

Real-time requests go to the real-time queue, bulk runs to the bulk queue. Their names carry
the deployment's queue prefix (`Settings.queue_prefix`: `QUEUE_PREFIX`, else `KEY_PREFIX`),
so two deployments sharing one Redis database never take each other's jobs:

    prefix ""  (KEY_PREFIX=c360, the default)   cancellations        cancellations.bulk
    prefix "acme"                                acme.cancellations   acme.cancellations.bulk

kombu's Redis transport splits each queue into one list per priority step; producers push
to those lists directly, so the list names are computed here exactly as kombu computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cancelq.core.settings import Settings

#: The default deployment's names (no prefix): unchanged from before prefixes existed.
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


@dataclass(frozen=True, slots=True)
class Queues:
    """One deployment's two queue names."""

    realtime: str = REALTIME_QUEUE
    bulk: str = BULK_QUEUE

    @classmethod
    def for_prefix(cls, prefix: str) -> Queues:
        if not prefix:
            return cls()
        return cls(f"{prefix}.{REALTIME_QUEUE}", f"{prefix}.{BULK_QUEUE}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Queues:
        return cls.for_prefix(settings.queue_prefix)

    @property
    def all(self) -> tuple[str, str]:
        """Real-time first: the order a worker asks Redis in (priority order)."""
        return (self.realtime, self.bulk)

    def known(self, name: object) -> str:
        """`name` if it is one of this deployment's queues, else the real-time queue.

        A message's routing key is whatever its sender wrote: taken as is, it could name any
        key (a hash, another deployment's list) and poison the delayed set. Retries and
        deferrals only ever go back to a queue of ours.
        """
        return name if isinstance(name, str) and name in self.all else self.realtime

    def list_keys(self) -> list[str]:
        """Every Redis list a retry may be pushed to: our queues at every priority step."""
        return [queue_key(name, step) for name in self.all for step in PRIORITY_STEPS]
