"""`BatchBuilder`: how internal producers (system observers, health checks, self-telemetry)
write OTLP, so that their data takes the same path as a service's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from gateway.pipeline.batch import MetricsBatch

__all__ = ["Attributes", "BatchBuilder", "HistogramValue"]

Attributes = Mapping[str, str | int | float | bool]

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _set_attributes(target: object, attributes: Attributes) -> None:
    kvs = target.attributes  # type: ignore[attr-defined]
    for key, value in attributes.items():
        kv: KeyValue = kvs.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = str(value)


class HistogramValue:
    """A cumulative explicit-bucket histogram: `bucket_counts` has len(bounds) + 1 entries."""

    __slots__ = ("bounds", "bucket_counts", "count", "sum")

    def __init__(
        self, bounds: Sequence[float], bucket_counts: Sequence[int], total: float, count: int
    ) -> None:
        if len(bucket_counts) != len(bounds) + 1:
            raise ValueError("bucket_counts needs len(bounds) + 1 entries")
        self.bounds = list(bounds)
        self.bucket_counts = list(bucket_counts)
        self.sum = total
        self.count = count


class BatchBuilder:
    """Builds one OTLP request for one resource and scope.

    >>> b = BatchBuilder({"service.name": "telemetry-gateway"}, scope="gateway.observers")
    >>> b.gauge("coderunner.system.load_average", "", "Load", [({"period": "1m"}, 0.5)], 10)
    >>> b.build(source="observer").request.resource_metrics[0].scope_metrics[0].metrics[0].name
    'coderunner.system.load_average'
    """

    def __init__(self, resource: Attributes, *, scope: str, scope_version: str = "") -> None:
        self._request = ExportMetricsServiceRequest()
        rm = self._request.resource_metrics.add()
        _set_attributes(rm.resource, resource)
        self._scope_metrics = rm.scope_metrics.add()
        self._scope_metrics.scope.name = scope
        self._scope_metrics.scope.version = scope_version

    def _metric(self, name: str, unit: str, description: str) -> metrics_pb2.Metric:
        m: metrics_pb2.Metric = self._scope_metrics.metrics.add()
        m.name = name
        m.unit = unit
        m.description = description
        return m

    def gauge(
        self,
        name: str,
        unit: str,
        description: str,
        points: Iterable[tuple[Attributes, float]],
        time_unix_nano: int,
    ) -> None:
        m = self._metric(name, unit, description)
        dps = m.gauge.data_points
        for attributes, value in points:
            p = dps.add()
            _set_attributes(p, attributes)
            p.time_unix_nano = time_unix_nano
            p.as_double = float(value)

    def sum(
        self,
        name: str,
        unit: str,
        description: str,
        points: Iterable[tuple[Attributes, float]],
        *,
        start_time_unix_nano: int,
        time_unix_nano: int,
        monotonic: bool = True,
    ) -> None:
        """A cumulative Sum (monotonic: a counter; otherwise an up-down counter)."""
        m = self._metric(name, unit, description)
        m.sum.is_monotonic = monotonic
        m.sum.aggregation_temporality = _CUMULATIVE
        dps = m.sum.data_points
        for attributes, value in points:
            p = dps.add()
            _set_attributes(p, attributes)
            p.start_time_unix_nano = start_time_unix_nano
            p.time_unix_nano = time_unix_nano
            p.as_double = float(value)

    def histogram(
        self,
        name: str,
        unit: str,
        description: str,
        points: Iterable[tuple[Attributes, HistogramValue]],
        *,
        start_time_unix_nano: int,
        time_unix_nano: int,
    ) -> None:
        m = self._metric(name, unit, description)
        m.histogram.aggregation_temporality = _CUMULATIVE
        dps = m.histogram.data_points
        for attributes, value in points:
            p = dps.add()
            _set_attributes(p, attributes)
            p.start_time_unix_nano = start_time_unix_nano
            p.time_unix_nano = time_unix_nano
            p.count = value.count
            p.sum = value.sum
            p.explicit_bounds.extend(value.bounds)
            p.bucket_counts.extend(value.bucket_counts)

    def build(self, *, source: str) -> MetricsBatch:
        return MetricsBatch(self._request, source=source)
