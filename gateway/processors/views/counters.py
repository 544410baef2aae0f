"""What the views leave out, counted by reason, for the gateway's self-telemetry.

Kept apart from the processor because the point arithmetic (`merge`) counts into it too; app.py
adds `ViewProcessor.counters.dropped` to the gateway's dropped-points self-metric.
"""

from __future__ import annotations

__all__ = ["ViewCounters"]


class ViewCounters:
    """What the views left out, by reason, for self-telemetry."""

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
