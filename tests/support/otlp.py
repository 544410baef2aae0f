"""Concise OTLP requests for tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

__all__ = ["CUMULATIVE", "DELTA", "Req"]

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
S = 1_000_000_000  # one second in nanoseconds


def _attrs(target: Any, attributes: Mapping[str, Any]) -> None:
    for k, v in attributes.items():
        kv: KeyValue = target.add()
        kv.key = k
        if isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        elif isinstance(v, float):
            kv.value.double_value = v
        else:
            kv.value.string_value = v


class Req:
    """Builds one request: `Req(service="svc").sum("x", [(attrs, value, start_s, end_s)])`."""

    def __init__(
        self, service: str = "svc", instance: str = "i-1", scope: str = "test", **resource: Any
    ) -> None:
        self.request = ExportMetricsServiceRequest()
        rm = self.request.resource_metrics.add()
        _attrs(
            rm.resource.attributes,
            {"service.name": service, "service.instance.id": instance, **resource},
        )
        self._sm = rm.scope_metrics.add()
        self._sm.scope.name = scope

    def _metric(self, name: str, unit: str, description: str) -> metrics_pb2.Metric:
        m = self._sm.metrics.add()
        m.name, m.unit, m.description = name, unit, description
        return m

    def sum(
        self,
        name: str,
        points: Sequence[tuple[Mapping[str, Any], float, int, int]],
        *,
        unit: str = "",
        temporality: int = CUMULATIVE,
        monotonic: bool = True,
        description: str = "",
    ) -> Req:
        m = self._metric(name, unit, description)
        m.sum.is_monotonic = monotonic
        m.sum.aggregation_temporality = temporality
        for attrs, value, start, end in points:
            p = m.sum.data_points.add()
            _attrs(p.attributes, attrs)
            p.start_time_unix_nano, p.time_unix_nano = start * S, end * S
            if isinstance(value, int):
                p.as_int = value
            else:
                p.as_double = value
        return self

    def gauge(
        self,
        name: str,
        points: Sequence[tuple[Mapping[str, Any], float, int]],
        *,
        unit: str = "",
        description: str = "",
    ) -> Req:
        m = self._metric(name, unit, description)
        for attrs, value, end in points:
            p = m.gauge.data_points.add()
            _attrs(p.attributes, attrs)
            p.time_unix_nano = end * S
            p.as_double = value
        return self

    def histogram(
        self,
        name: str,
        points: Sequence[tuple[Mapping[str, Any], Sequence[float], Sequence[int], float, int, int]],
        *,
        unit: str = "",
        temporality: int = CUMULATIVE,
    ) -> Req:
        """points: (attrs, bounds, bucket_counts, sum, start_s, end_s)."""
        m = self._metric(name, unit, "")
        m.histogram.aggregation_temporality = temporality
        for attrs, bounds, counts, total, start, end in points:
            p = m.histogram.data_points.add()
            _attrs(p.attributes, attrs)
            p.start_time_unix_nano, p.time_unix_nano = start * S, end * S
            p.explicit_bounds.extend(bounds)
            p.bucket_counts.extend(counts)
            p.count = sum(counts)
            p.sum = total
        return self

    def bytes(self) -> bytes:
        return self.request.SerializeToString()
