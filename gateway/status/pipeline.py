"""`/api/status/pipeline`: what came in, what was refused or dropped and why, how long requests
took, whether forwarding keeps up, and the memory limiter.

Rates need two readings. Rather than a background task (one more loop that could die
silently), every request adds a reading to a short ring and the rate is taken against the
oldest reading of the last `WINDOW_SECONDS`; the page polls every two seconds, so after its
second poll every figure has a rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WINDOW_SECONDS", "PipelineReadings", "Snapshot", "quantile"]

#: rates and recent latency are measured over at most this many seconds
WINDOW_SECONDS = 30.0
_RING = 256  # readings kept; at one request a second that is more than the window

Durations = Mapping[str, tuple[Sequence[float], Sequence[int], float]]


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The q-quantile of a histogram (`counts` has the +Inf bucket last), interpolated
    linearly inside its bucket as Prometheus' `histogram_quantile` does; a quantile in the
    +Inf bucket answers the highest finite bound. None for an empty histogram.

        >>> quantile(0.5, [1.0, 2.0], [0, 10, 0])   # all ten in (1, 2]
        1.5
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if seen + n >= rank and n > 0:
            if i >= len(bounds):
                return bounds[-1] if bounds else None
            low = bounds[i - 1] if i > 0 else 0.0
            return low + (bounds[i] - low) * (rank - seen) / n
        seen += n
    return bounds[-1] if bounds else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Totals at one moment: points received by transport, request durations by transport."""

    at: float
    received: Mapping[str, int]
    durations: Durations


def _latency(bounds: Sequence[float], counts: Sequence[int], total: float) -> dict[str, Any]:
    n = sum(counts)
    return {
        "requests": n,
        "mean_seconds": total / n if n else None,
        "p50_seconds": quantile(0.5, bounds, counts),
        "p90_seconds": quantile(0.9, bounds, counts),
        "p99_seconds": quantile(0.99, bounds, counts),
    }


class PipelineReadings:
    """The ring of snapshots and the rates between them."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ring: deque[Snapshot] = deque(maxlen=_RING)

    def add(self, received: Mapping[str, int], durations: Durations) -> tuple[Snapshot, Snapshot]:
        """Record the totals now; returns (baseline, now) where baseline is the oldest
        snapshot of the window (now itself on the first call)."""
        now = Snapshot(self._clock(), dict(received), durations)
        ring = self._ring
        while ring and ring[0].at < now.at - WINDOW_SECONDS:
            ring.popleft()
        ring.append(now)
        return ring[0], now

    @staticmethod
    def rates(base: Snapshot, now: Snapshot) -> dict[str, Any]:
        """Points/s by transport and recent latency between two snapshots (None without a
        second reading)."""
        dt = now.at - base.at
        per_transport: dict[str, dict[str, Any]] = {}
        for transport, total in sorted(now.received.items()):
            before = base.received.get(transport, 0)
            per_transport[transport] = {
                "total": total,
                "per_second": (total - before) / dt if dt > 0 else None,
            }
        latency: dict[str, Any] = {}
        for transport, (bounds, counts, seconds) in sorted(now.durations.items()):
            since_start = _latency(bounds, counts, seconds)
            old = base.durations.get(transport)
            recent = None
            if dt > 0:
                old_counts = old[1] if old is not None else [0] * len(counts)
                old_seconds = old[2] if old is not None else 0.0
                diff = [a - b for a, b in zip(counts, old_counts, strict=True)]
                recent = _latency(bounds, diff, seconds - old_seconds)
            latency[transport] = {"since_start": since_start, "recent": recent}
        in_total = sum(now.received.values())
        return {
            "window_seconds": dt if dt > 0 else None,
            "points_in": {
                "total": in_total,
                "per_second": (in_total - sum(base.received.values())) / dt if dt > 0 else None,
                "by_transport": per_transport,
            },
            "latency": latency,
        }
