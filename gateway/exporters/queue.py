"""Forward queues: where batches wait for the upstream.

The forwarder only needs `offer`, `peek`, `ack` and `__len__`, so a durable queue can replace
the in-memory one without touching it: `peek` hands out entries without removing them and `ack`
removes them once the upstream accepted them (at-least-once).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Entry", "ForwardQueue", "MemoryQueue"]


@dataclass(frozen=True, slots=True)
class Entry:
    #: a serialized ExportMetricsServiceRequest
    payload: bytes
    points: int


class ForwardQueue(Protocol):
    capacity: int

    def offer(self, entry: Entry) -> bool:
        """Append; False when the queue is full (the caller counts the drop)."""
        ...

    def peek(self, max_points: int) -> list[Entry]:
        """The oldest entries, at least one, up to `max_points` points in all."""
        ...

    def ack(self, count: int) -> None:
        """Remove the `count` oldest entries: they were delivered (or given up on)."""
        ...

    def __len__(self) -> int: ...


class MemoryQueue:
    """A bounded FIFO in memory: what it holds is lost if the process dies."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Entry] = deque()

    def offer(self, entry: Entry) -> bool:
        if len(self._items) >= self.capacity:
            return False
        self._items.append(entry)
        return True

    def peek(self, max_points: int) -> list[Entry]:
        out: list[Entry] = []
        total = 0
        for entry in self._items:
            if out and total + entry.points > max_points:
                break
            out.append(entry)
            total += entry.points
        return out

    def ack(self, count: int) -> None:
        for _ in range(min(count, len(self._items))):
            self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
