"""OTLP request bodies for the benchmarks: cumulative sums, 5 attributes per point."""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

START_NS = 1_700_000_000_000_000_000


def counter_requests(
    series: int, per_request: int, *, metrics: int = 10, round_: int = 0, services: int = 1
) -> Iterator[ExportMetricsServiceRequest]:
    """`series` distinct series spread over `metrics` counters, in requests of `per_request`
    points. `round_` moves time and values forward, so repeated rounds are valid cumulative
    updates."""
    per_metric = series // metrics
    points = [(m, i) for m in range(metrics) for i in range(per_metric)]
    for offset in range(0, len(points), per_request):
        chunk = points[offset : offset + per_request]
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="service.name", value={"string_value": "bench"})
        rm.resource.attributes.add(
            key="service.instance.id", value={"string_value": f"bench-{offset % services}"}
        )
        sm = rm.scope_metrics.add()
        sm.scope.name = "bench"
        by_metric: dict[int, metrics_pb2.Metric] = {}
        for m, i in chunk:
            metric = by_metric.get(m)
            if metric is None:
                metric = by_metric[m] = sm.metrics.add()
                metric.name = f"bench.metric.{m}"
                metric.unit = "{request}"
                metric.sum.is_monotonic = True
                metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
            p = metric.sum.data_points.add()
            p.start_time_unix_nano = START_NS
            p.time_unix_nano = START_NS + (round_ + 1) * 10_000_000_000
            p.as_double = i + 0.5 + round_
            for a in range(5):
                kv = p.attributes.add()
                kv.key = f"attr{a}"
                kv.value.string_value = f"value-{i}-{a}"
        yield request
