"""`Reading`: what one observer cycle saw, before it becomes OTLP.

One cycle produces one reading; the batch for the pipeline and the JSON of
`GET /api/metrics/current` are both made from it, so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gateway.catalogue import Metric
from gateway.pipeline.builder import Attributes

__all__ = ["Reading", "Series"]


class Series(NamedTuple):
    """One catalogue metric's points in one cycle. Attribute mappings are shared between
    cycles (the observer caches them): read them, never change them. (A named tuple, not a
    dataclass: twenty are made every cycle, and a tuple is made at half the cost.)"""

    metric: Metric
    points: list[tuple[Attributes, float]]
    #: cumulative sums only: when counting began (boot or process start), Unix nanoseconds
    start_time_unix_nano: int = 0


@dataclass(frozen=True, slots=True)
class Reading:
    time_unix_nano: int
    series: tuple[Series, ...]
    #: the key gauges, kept in the history (None when that part of the cycle failed or, for
    #: CPU usage, on the very first cycle with nothing to compare against)
    cpu_usage_percent: float | None
    memory_utilization: float | None
    load_1m: float | None
