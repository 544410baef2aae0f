"""`BatchTemplate`: one OTLP batch per cycle at a fraction of the cost of building it.

A host's shape (cores, interfaces, devices, mounts) rarely changes between cycles, so the
request is built with `BatchBuilder` once per shape, and each cycle copies it (one C-level
`CopyFrom`) and writes only the values and timestamps. That halves the cost of the batch, about
a quarter of the whole cycle (docs/performance.md, "System observers").

The shape is the sequence of (metric, start time, attribute mapping objects). The observer
reuses its attribute mappings between cycles, so comparing them by identity is both cheap and
exact; the template keeps references to them, so an identity can never be recycled.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import is_

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.catalogue import Kind, Metric
from gateway.observers.reading import Reading
from gateway.pipeline import MetricsBatch
from gateway.pipeline.builder import Attributes, BatchBuilder

__all__ = ["BatchTemplate"]


class BatchTemplate:
    def __init__(
        self,
        resource: Attributes,
        *,
        scope: str,
        scope_version: str,
        otel_name: Callable[[Metric], str],
    ) -> None:
        self._resource = resource
        self._scope = scope
        self._scope_version = scope_version
        self._otel_name = otel_name
        self._key: list[tuple[Metric, int, int]] = []
        self._attrs: list[Attributes] = []
        self._template: ExportMetricsServiceRequest | None = None
        self._kinds: list[str] = []
        #: how often the shape changed and the template was rebuilt (for tests and the bench)
        self.rebuilds = 0

    def render(self, reading: Reading) -> MetricsBatch:
        """The batch for `reading`, equal to what `build()` gives."""
        series = reading.series
        key = [(s.metric, s.start_time_unix_nano, len(s.points)) for s in series]
        attrs = [a for s in series for a, _ in s.points]
        if self._template is None or key != self._key or not all(map(is_, attrs, self._attrs)):
            self._rebuild(reading, key, attrs)
        assert self._template is not None
        request = ExportMetricsServiceRequest()
        request.CopyFrom(self._template)
        now = reading.time_unix_nano
        metrics = request.resource_metrics[0].scope_metrics[0].metrics
        for metric, kind, s in zip(metrics, self._kinds, series, strict=True):
            for point, (_, value) in zip(getattr(metric, kind).data_points, s.points, strict=True):
                point.time_unix_nano = now
                point.as_double = value
        return MetricsBatch(request, source="observer")

    def build(self, reading: Reading) -> MetricsBatch:
        """The batch for `reading`, straight from `BatchBuilder` (the reference `render`
        must match)."""
        builder = BatchBuilder(self._resource, scope=self._scope, scope_version=self._scope_version)
        now = reading.time_unix_nano
        for s in reading.series:
            m = s.metric
            name = self._otel_name(m)
            if m.kind is Kind.GAUGE:
                builder.gauge(name, m.unit, m.help, s.points, now)
            else:
                builder.sum(
                    name,
                    m.unit,
                    m.help,
                    s.points,
                    start_time_unix_nano=s.start_time_unix_nano,
                    time_unix_nano=now,
                    monotonic=m.kind is Kind.COUNTER,
                )
        return builder.build(source="observer")

    def _rebuild(
        self, reading: Reading, key: list[tuple[Metric, int, int]], attrs: list[Attributes]
    ) -> None:
        self._template = self.build(reading).request
        self._key = key
        self._attrs = attrs
        self._kinds = ["gauge" if s.metric.kind is Kind.GAUGE else "sum" for s in reading.series]
        self.rebuilds += 1
