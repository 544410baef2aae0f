"""`History`: the latest reading and a bounded ring of recent key gauges.

Feeds `GET /api/metrics/current`. Memory is bounded by construction: the ring is a
`deque(maxlen=...)` of six-field tuples, and only the newest full `Reading` is kept.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import NamedTuple

from gateway.observers.reading import Reading

__all__ = ["History", "HistoryPoint"]


class HistoryPoint(NamedTuple):
    time_unix_nano: int
    cpu_usage_percent: float | None
    memory_utilization: float | None
    load_1m: float | None
    #: bytes received and sent over all observed interfaces since boot (None: not read)
    network_receive_bytes: float | None = None
    network_transmit_bytes: float | None = None


_NETWORK_IO = "system.network.io"


def _network_totals(reading: Reading) -> tuple[float | None, float | None]:
    """Received and sent bytes summed over the interfaces of the reading's network series."""
    for series in reading.series:
        if series.metric.name == _NETWORK_IO:
            rx = sum(v for attrs, v in series.points if attrs.get("direction") == "receive")
            tx = sum(v for attrs, v in series.points if attrs.get("direction") == "transmit")
            return rx, tx
    return None, None


class History:
    """Written by the observer once per cycle, read by the HTTP handler (same event loop)."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self._points: deque[HistoryPoint] = deque(maxlen=maxlen)
        self._latest: Reading | None = None
        self.interval_seconds = 0.0
        self.cycle_cpu_seconds = 0.0
        self.overhead = 0.0

    @property
    def maxlen(self) -> int:
        return self._points.maxlen or 0

    @property
    def latest(self) -> Reading | None:
        return self._latest

    def __len__(self) -> int:
        return len(self._points)

    def record(self, reading: Reading) -> None:
        self._latest = reading
        rx, tx = _network_totals(reading)
        self._points.append(
            HistoryPoint(
                reading.time_unix_nano,
                reading.cpu_usage_percent,
                reading.memory_utilization,
                reading.load_1m,
                rx,
                tx,
            )
        )

    def points(self, since_unix_nano: int = 0) -> list[HistoryPoint]:
        """Points at or after `since_unix_nano`, oldest first."""
        if since_unix_nano <= 0:
            return list(self._points)
        return [p for p in self._points if p.time_unix_nano >= since_unix_nano]

    def size_bytes(self) -> int:
        """Bytes held by the ring (deque, tuples and their numbers; the latest reading is one
        cycle's worth and not counted). Floats and small ints may be shared, so this is an
        upper bound."""
        total = sys.getsizeof(self._points)
        for p in self._points:
            total += sys.getsizeof(p) + sum(sys.getsizeof(v) for v in p if v is not None)
        return total
