"""The metrics pipeline: is data coming in, and how much of it is refused.

Reads the pipeline through `PipelineStats`, three methods the integrator implements on whatever
counts ingest (the receivers' or the pipeline's own counters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.health.checks._configured import configured_check
from gateway.health.config import PipelineCheckConfig
from gateway.health.model import Check, CheckOutcome, Observation, Status

__all__ = ["COMPONENT", "PipelineCheck", "PipelineCounters", "PipelineStats", "pipeline_check"]

COMPONENT = "pipeline"


@runtime_checkable
class PipelineStats(Protocol):
    """What the check needs from the pipeline (totals since start; they only grow)."""

    def points_received_total(self) -> int:
        """Data points offered to the pipeline, accepted or not."""
        ...

    def points_rejected_total(self) -> int:
        """Data points refused (invalid, over limits)."""
        ...

    def last_ingest_unix(self) -> float | None:
        """Wall-clock time of the last accepted batch; None if none yet."""
        ...


class PipelineCounters:
    """`PipelineStats` over two counter readers, for a pipeline that counts but does not
    timestamp: the last ingest is when the accepted count (received - rejected) was last seen
    to grow, so its resolution is the check interval.

    >>> stats = PipelineCounters(lambda: store.seen, lambda: store.refused)  # doctest: +SKIP
    """

    def __init__(
        self,
        received: Callable[[], int],
        rejected: Callable[[], int],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._received = received
        self._rejected = rejected
        self._wall = wall_clock
        self._accepted = 0
        self._last: float | None = None

    def points_received_total(self) -> int:
        return self._received()

    def points_rejected_total(self) -> int:
        return self._rejected()

    def last_ingest_unix(self) -> float | None:
        accepted = self._received() - self._rejected()
        if accepted > self._accepted:
            self._accepted = accepted
            self._last = self._wall()
        return self._last


class PipelineCheck:
    """The reject ratio over the points received since the previous run; idleness warns only
    when `idle_warn_seconds` is set (a gateway nobody sends to is not broken)."""

    def __init__(
        self,
        stats: PipelineStats,
        config: PipelineCheckConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self._config = config
        self._wall = wall_clock
        self._started = wall_clock()
        self._last_received = 0
        self._last_rejected = 0

    async def __call__(self) -> CheckOutcome:
        cfg = self._config
        received = self._stats.points_received_total()
        rejected = self._stats.points_rejected_total()
        d_received = received - self._last_received
        d_rejected = rejected - self._last_rejected
        self._last_received, self._last_rejected = received, rejected
        ratio = d_rejected / d_received if d_received > 0 else 0.0
        if cfg.reject_fail_ratio is not None and d_received > 0 and ratio >= cfg.reject_fail_ratio:
            reject_status = Status.FAIL
        elif d_received > 0 and ratio >= cfg.reject_warn_ratio and d_rejected > 0:
            reject_status = Status.WARN
        else:
            reject_status = Status.PASS
        last = self._stats.last_ingest_unix()
        idle = self._wall() - (last if last is not None else self._started)
        idle_status = Status.PASS
        if cfg.idle_warn_seconds is not None and idle >= cfg.idle_warn_seconds:
            idle_status = Status.WARN
        return CheckOutcome.of(
            Observation(
                "rejectRatio",
                round(ratio, 4),
                "ratio",
                status=reject_status,
                output=f"{d_rejected} of {d_received} points rejected since the last check"
                if reject_status is not Status.PASS
                else "",
            ),
            Observation(
                "pointsReceived",
                d_received,
                "points",
            ),
            Observation(
                "lastIngestAge",
                round(idle, 3),
                "s",
                status=idle_status,
                output=f"no data for {idle:.0f}s" if idle_status is not Status.PASS else "",
            ),
        )


def pipeline_check(
    config: PipelineCheckConfig,
    stats: PipelineStats,
    *,
    wall_clock: Callable[[], float] = time.time,
) -> Check:
    return configured_check(
        COMPONENT,
        PipelineCheck(stats, config, wall_clock=wall_clock),
        config,
        component_type="component",
    )
