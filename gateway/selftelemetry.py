"""The gateway's own metrics, produced as OTLP like everything else.

Receivers record what they handled; at each scrape (and at each forward interval) the numbers
become one cumulative OTLP batch that goes through the pipeline, so the gateway's metrics follow
the same naming rules and reach Prometheus the same way as a service's.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping

from gateway.catalogue import by_name
from gateway.pipeline.batch import MetricsBatch
from gateway.pipeline.builder import Attributes, BatchBuilder, HistogramValue

__all__ = ["SelfTelemetry"]

# Request durations: 0.5 ms .. 10 s.
_DURATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Durations:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_DURATION_BOUNDS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_DURATION_BOUNDS, seconds)] += 1
        self.total += seconds


class SelfTelemetry:
    """Counters the receivers update, plus gauges read from other components at collection."""

    def __init__(
        self,
        resource: Attributes,
        *,
        namespace: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._resource = resource
        self._namespace = namespace
        self._wall = wall_clock
        self._start_ns = int(wall_clock() * 1e9)
        self.received: dict[str, int] = {}
        self.refused: dict[tuple[str, str], int] = {}
        self._durations: dict[str, _Durations] = {}
        #: name -> function returning the current value, for gauges owned elsewhere
        self._gauges: dict[str, Callable[[], float]] = {}
        #: name -> function returning {label value: count}, for counters owned elsewhere
        self._counters: dict[str, tuple[str, Callable[[], Mapping[str, int]]]] = {}

    def record_request(self, transport: str, points: int, seconds: float) -> None:
        self.received[transport] = self.received.get(transport, 0) + points
        durations = self._durations.get(transport)
        if durations is None:
            durations = self._durations[transport] = _Durations()
        durations.observe(seconds)

    def record_refused(self, transport: str, reason: str) -> None:
        key = (transport, reason)
        self.refused[key] = self.refused.get(key, 0) + 1

    def request_durations(self) -> dict[str, tuple[tuple[float, ...], list[int], float]]:
        """Per transport: (bucket upper bounds, counts with the +Inf bucket last, sum of
        seconds), since start; a copy, for the status page."""
        return {t: (_DURATION_BOUNDS, list(d.counts), d.total) for t, d in self._durations.items()}

    def record_internal(self, source: str, points: int) -> None:
        self.received[source] = self.received.get(source, 0) + points

    def gauge(self, catalogue_name: str, read: Callable[[], float]) -> None:
        self._gauges[catalogue_name] = read

    def counter(
        self, catalogue_name: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        """A counter whose values another component keeps, by one label (`""`: no label)."""
        self._counters[catalogue_name] = (label, read)

    def names(self) -> list[str]:
        """Catalogue names of every metric `batch()` may produce (whether or not it has points
        yet), so that the series store can keep them for the gateway."""
        own = ["gateway.points.received", "gateway.requests.refused", "gateway.request.duration"]
        return [*own, *self._counters, *self._gauges]

    def batch(self) -> MetricsBatch:
        now_ns = int(self._wall() * 1e9)
        ns = self._namespace
        b = BatchBuilder(self._resource, scope="telemetry-gateway")
        start_ns = self._start_ns

        def counter(name: str, points: list[tuple[Attributes, float]]) -> None:
            entry = by_name(name)
            b.sum(
                entry.otel_name(ns),
                entry.unit,
                entry.help,
                points,
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
            )

        counter(
            "gateway.points.received", [({"transport": t}, n) for t, n in self.received.items()]
        )
        counter(
            "gateway.requests.refused",
            [({"transport": t, "reason": r}, n) for (t, r), n in self.refused.items()],
        )
        for counter_name, (label, read_counts) in self._counters.items():
            counts = read_counts()
            counter(counter_name, [({label: k} if label else {}, n) for k, n in counts.items()])
        entry = by_name("gateway.request.duration")
        b.histogram(
            entry.otel_name(ns),
            entry.unit,
            entry.help,
            [
                (
                    {"transport": t},
                    HistogramValue(_DURATION_BOUNDS, d.counts, d.total, sum(d.counts)),
                )
                for t, d in self._durations.items()
            ],
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
        )
        for gauge_name, read_value in self._gauges.items():
            entry = by_name(gauge_name)
            b.gauge(entry.otel_name(ns), entry.unit, entry.help, [({}, read_value())], now_ns)
        return b.build(source="self")
