"""Exact histograms aggregated in this package, handed to the SDK's readers at collection.

Why not `Histogram.record()`? One SDK measurement costs 7 µs in a tight loop and about 16 µs
inside a request (it validates, copies and recursively hashes the attribute dict, asks the
exemplar filter, looks the stream up per reader and takes two locks), against a budget of
8 µs for the whole per-request cost. Here a measurement is a dict lookup by a tuple the caller
already has, a `bisect` and a few additions under one uncontended lock: about 0.5 µs. The
result is the same data the SDK would export: cumulative (or delta) explicit-bucket histogram
points with the same name, unit, description, attributes, boundaries, count, sum, min and max.

How the data reaches the exporters. OpenTelemetry's specification has a MetricProducer for
exactly this (a reader merges the producers' pre-aggregated metrics into each collection), but
the Python SDK (1.45) does not implement it. The choices were:

* an exporter wrapper (`MetricExporter.export()` adds our metrics): public interface, but only
  readers built around an exporter see the data (not `InMemoryMetricReader`, not a Prometheus
  reader), and an exporter does not know its reader's temporality;
* a reader subclass: `MetricReader.collect()` is `@final`, and each reader kind (periodic,
  in-memory, user-supplied) would need its own subclass;
* hooking the reader's collection callback, which is what `hook_reader()` does: the provider
  hands every reader its collect function (`MetricReader._set_collect_callback`, stored in
  `reader._collect`); we wrap it so that the reader receives the SDK's metrics plus ours, in the
  reader's own temporality (`reader._instrument_class_temporality`). That is the spot where a
  MetricProducer's output would be merged, so every reader gets the data, whatever its kind.
  It touches two private attributes of the SDK; `hook_reader()` checks that they exist and
  fails at `setup()` with a clear message otherwise, and the tests run against the SDK
  versions `pyproject.toml` allows.

What differs from the SDK's own histogram: views configured on the provider do not apply to
these instruments (the package sets their boundaries itself), there are no exemplars, and a
delta reader gets no min/max (they are optional in OTLP; cumulative min/max do not give an
interval's). The number of series per instrument is capped like the SDK's cardinality limit
(2000): further attribute sets are counted in one series with `otel.metric.overflow=true`.

Worked example, cumulative: records of 0.003 and 0.2 s for key K give, at each collection, one
point for K with count 2, sum 0.203, bucket_counts [1, 0, 0, 0, 0, 0, 1, 0, ...] (0.003 <= 0.005,
the first bound; 0.1 < 0.2 <= 0.25, the seventh), min 0.003, max 0.2. A delta reader collecting
after the first record and again after the second gets count 1 / sum 0.003, then count 1 / sum
0.2, each interval starting where the previous one ended.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics import Histogram as _HistogramInstrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

__all__ = ["CARDINALITY_LIMIT", "ExactHistogram", "MetricsSource", "hook_reader"]

#: series per instrument, as the SDK's default cardinality limit
CARDINALITY_LIMIT = 2000
_OVERFLOW = "__overflow__"  # a key no caller builds
_OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}


class _Series:
    __slots__ = ("attributes", "counts", "max", "min", "start_ns", "sum")

    def __init__(self, attributes: Attributes, buckets: int) -> None:
        self.attributes = attributes
        self.counts = [0] * buckets
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.start_ns = time_ns()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    attributes: Attributes
    start_ns: int
    counts: tuple[int, ...]
    sum: float
    min: float
    max: float


class ExactHistogram:
    """One explicit-bucket histogram instrument, aggregated here.

    `record(key, value)`: `key` is any hashable the caller has at hand (a tuple of the
    attribute values); `attributes(key)` turns it into the attribute dict, once per key.
    Thread-safe: every update holds `lock`, which the caller may share with its own
    bookkeeping (`record_locked()` is for a caller that holds it already).
    """

    def __init__(
        self,
        name: str,
        *,
        unit: str,
        description: str,
        boundaries: Sequence[float],
        attributes: Callable[[Any], Attributes],
        lock: threading.Lock | None = None,
        cardinality_limit: int = CARDINALITY_LIMIT,
    ) -> None:
        if list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"{name}: boundaries must increase strictly, got {boundaries}")
        if cardinality_limit < 2:
            raise ValueError(f"{name}: cardinality_limit must be >= 2, got {cardinality_limit}")
        self.name = name
        self.unit = unit
        self.description = description
        self.boundaries = tuple(float(b) for b in boundaries)
        self.lock = lock or threading.Lock()
        self._attributes = attributes
        self._limit = cardinality_limit
        self._series: dict[Hashable, _Series] = {}
        # per delta reader: the cumulative snapshot it last saw, and when
        self._last_seen: dict[int, tuple[int, dict[Hashable, _Snapshot]]] = {}

    def _add(self, key: Hashable) -> _Series:
        with self.lock:
            series = self._series.get(key)
            if series is not None:
                return series
            if len(self._series) >= self._limit - 1:
                key = _OVERFLOW
                series = self._series.get(key)
                if series is not None:
                    return series
                attributes: Attributes = _OVERFLOW_ATTRIBUTES
            else:
                attributes = self._attributes(key)
            series = _Series(attributes, len(self.boundaries) + 1)
            self._series[key] = series
            return series

    def record(self, key: Hashable, value: float) -> None:
        series = self._series.get(key) or self._add(key)
        # Bucket i holds (bounds[i-1], bounds[i]]: bisect_left, as the SDK does.
        i = bisect_left(self.boundaries, value)
        with self.lock:
            series.counts[i] += 1
            series.sum += value
            if value < series.min:
                series.min = value
            if value > series.max:
                series.max = value

    def series_for(self, key: Hashable) -> _Series:
        """The series of `key`, created if new (then counted towards the limit). For callers
        that record under `lock` with `record_locked()`."""
        return self._series.get(key) or self._add(key)

    def record_locked(self, series: _Series, value: float) -> None:
        """`record()` for a caller that already holds `lock` and has the series."""
        series.counts[bisect_left(self.boundaries, value)] += 1
        series.sum += value
        if value < series.min:
            series.min = value
        if value > series.max:
            series.max = value

    def _snapshot(self) -> dict[Hashable, _Snapshot]:
        with self.lock:
            return {
                key: _Snapshot(s.attributes, s.start_ns, tuple(s.counts), s.sum, s.min, s.max)
                for key, s in self._series.items()
                if s.max >= s.min  # created but not yet recorded into
            }

    def collect(self, reader: MetricReader, temporality: AggregationTemporality) -> Metric | None:
        """This instrument's points for one collection by `reader`, or None when empty."""
        now = time_ns()
        current = self._snapshot()
        points: list[HistogramDataPoint] = []
        if temporality is AggregationTemporality.DELTA:
            since, previous = self._last_seen.get(id(reader), (0, {}))
            self._last_seen[id(reader)] = (now, current)
            for key, snap in current.items():
                before = previous.get(key)
                counts = (
                    snap.counts
                    if before is None
                    else tuple(a - b for a, b in zip(snap.counts, before.counts, strict=True))
                )
                count = sum(counts)
                if count == 0:
                    continue
                points.append(
                    HistogramDataPoint(
                        attributes=snap.attributes,
                        start_time_unix_nano=since or snap.start_ns,
                        time_unix_nano=now,
                        count=count,
                        sum=snap.sum - (before.sum if before else 0.0),
                        bucket_counts=counts,
                        explicit_bounds=self.boundaries,
                        # An interval's min/max do not follow from cumulative ones; OTLP
                        # makes them optional, and None leaves them unset.
                        min=None,  # type: ignore[arg-type]
                        max=None,  # type: ignore[arg-type]
                    )
                )
        else:
            for snap in current.values():
                points.append(
                    HistogramDataPoint(
                        attributes=snap.attributes,
                        start_time_unix_nano=snap.start_ns,
                        time_unix_nano=now,
                        # From the buckets, so count and buckets agree even when a record
                        # was half applied (impossible under the lock, cheap to be sure).
                        count=sum(snap.counts),
                        sum=snap.sum,
                        bucket_counts=snap.counts,
                        explicit_bounds=self.boundaries,
                        min=snap.min,
                        max=snap.max,
                    )
                )
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=points, aggregation_temporality=temporality),
        )


@dataclass(frozen=True, slots=True)
class MetricsSource:
    """Instruments aggregated here, under one instrumentation scope."""

    scope: InstrumentationScope
    histograms: Sequence[ExactHistogram]

    def collect(self, reader: MetricReader, temporality: AggregationTemporality) -> list[Metric]:
        return [m for h in self.histograms if (m := h.collect(reader, temporality)) is not None]


def _histogram_temporality(reader: MetricReader) -> AggregationTemporality:
    for cls, temporality in reader._instrument_class_temporality.items():
        if issubclass(cls, _HistogramInstrument):
            return temporality
    return AggregationTemporality.CUMULATIVE


def _merge(
    data: MetricsData | None,
    extra: Sequence[tuple[InstrumentationScope, list[Metric]]],
    resource: Resource,
) -> MetricsData | None:
    extra = [(scope, metrics) for scope, metrics in extra if metrics]
    if not extra:
        return data
    if data is None or not data.resource_metrics:
        scopes = [ScopeMetrics(scope, metrics, scope.schema_url or "") for scope, metrics in extra]
        return MetricsData([ResourceMetrics(resource, scopes, resource.schema_url)])
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    for scope, metrics in extra:
        for i, existing in enumerate(scopes):
            if existing.scope == scope:
                # The SDK reports this scope's other instruments (active requests): one scope.
                scopes[i] = ScopeMetrics(scope, [*existing.metrics, *metrics], existing.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(scope, metrics, scope.schema_url or ""))
    return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def hook_reader(reader: MetricReader, sources: Sequence[MetricsSource], resource: Resource) -> None:
    """Make `reader` receive `sources`' metrics with every collection (see the module doc).
    Call after the reader is registered with its MeterProvider."""
    original = getattr(reader, "_collect", None)
    if not callable(original) or not isinstance(
        getattr(reader, "_instrument_class_temporality", None), dict
    ):
        raise RuntimeError(
            f"{type(reader).__name__} has no collect callback to extend: this opentelemetry-sdk "
            "version changed the reader internals that instrumentation/_exact.py relies on "
            "(tested with 1.45); pin opentelemetry-sdk to a tested version"
        )

    def collect(r: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
        data: MetricsData | None = original(r, timeout_millis=timeout_millis)
        temporality = _histogram_temporality(r)
        return _merge(data, [(s.scope, s.collect(r, temporality)) for s in sources], resource)

    # The SDK types the callback loosely (its signature differs from how collect() calls it).
    reader._collect = collect  # type: ignore[assignment]
