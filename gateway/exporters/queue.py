"""Forward queues: where batches wait for the upstream.

The forwarder only needs the `ForwardQueue` protocol, so the durable queue
(`gateway.exporters.disk_queue.DiskQueue`) replaces the in-memory one without touching it:
`peek` hands out entries without removing them and `ack` removes them once the upstream
accepted them (at-least-once).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Entry", "ForwardQueue", "MemoryQueue"]


@dataclass(frozen=True, slots=True)
class Entry:
    #: a serialized ExportMetricsServiceRequest
    payload: bytes
    points: int
    #: sends tried before (by this process or one that crashed): if > 0, sending again may
    #: deliver a duplicate
    attempts: int = 0


class ForwardQueue(Protocol):
    #: what `fill_ratio` measures against (entries for the memory queue, bytes on disk)
    capacity: int

    def offer(self, entry: Entry) -> bool:
        """Append; False when the queue is full (the caller counts the drop)."""
        ...

    def has_room(self) -> bool:
        """Whether `offer` would take more data now (for admission before the body is read)."""
        ...

    def peek(self, max_points: int) -> list[Entry]:
        """The oldest entries, at least one, up to `max_points` points in all."""
        ...

    def mark_attempted(self, count: int) -> None:
        """The `count` oldest entries are about to be sent (remembered across a crash)."""
        ...

    def ack(self, count: int) -> None:
        """Remove the `count` oldest entries: they were delivered (or given up on)."""
        ...

    def fill_ratio(self) -> float:
        """How full the queue is, 0-1."""
        ...

    def evicted_points(self) -> int:
        """Points dropped to make room (the drop_oldest policy), since start."""
        ...

    def close(self) -> None:
        """Release files; what is queued stays queued (on disk) or is lost (in memory)."""
        ...

    def __len__(self) -> int: ...


class MemoryQueue:
    """A bounded FIFO in memory: what it holds is lost if the process dies."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Entry] = deque()
        #: when each entry arrived (monotonic seconds), beside `_items`
        self._arrived: deque[float] = deque()

    def offer(self, entry: Entry) -> bool:
        if len(self._items) >= self.capacity:
            return False
        self._items.append(entry)
        self._arrived.append(time.monotonic())
        return True

    def oldest_age_seconds(self) -> float | None:
        """How long the oldest entry has waited; None when the queue is empty."""
        return time.monotonic() - self._arrived[0] if self._arrived else None

    def has_room(self) -> bool:
        return len(self._items) < self.capacity

    def peek(self, max_points: int) -> list[Entry]:
        out: list[Entry] = []
        total = 0
        for entry in self._items:
            if out and total + entry.points > max_points:
                break
            out.append(entry)
            total += entry.points
        return out

    def mark_attempted(self, count: int) -> None:
        """Nothing to remember: a crash loses the entries anyway."""

    def ack(self, count: int) -> None:
        for _ in range(min(count, len(self._items))):
            self._items.popleft()
            self._arrived.popleft()

    def fill_ratio(self) -> float:
        return len(self._items) / self.capacity

    def evicted_points(self) -> int:
        return 0

    def close(self) -> None:
        self._items.clear()
        self._arrived.clear()

    def __len__(self) -> int:
        return len(self._items)
