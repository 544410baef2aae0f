"""`MetricsBatch`: one OTLP request on its way through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

__all__ = ["MetricsBatch", "Overflowed", "count_points"]


def count_points(request: ExportMetricsServiceRequest) -> int:
    """Number of data points in a request, over every metric type."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(m, kind).data_points)
    return total


class Overflowed(NamedTuple):
    """What the series store did with the points of one metric whose stream is over its
    cardinality limit, by index in the metric's `data_points` (after the store removed the
    points it refused)."""

    #: points of overflowed series, which the forward path folds into one overflow point
    folded: list[int]
    #: points the store dropped at a limit (and reported in `reject()`): the forward path
    #: drops them too, so that upstream shows what /metrics shows
    dropped: list[int]


@dataclass(slots=True)
class MetricsBatch:
    """An OTLP request plus what the pipeline learns about it on the way.

    Processors may change `request` in place. A point that a processor refuses is removed from
    the request and counted with `reject()`; the receiver turns the tally into OTLP's
    `partial_success` (`rejected_data_points`, `error_message`).
    """

    request: ExportMetricsServiceRequest
    #: who sent it: the tenant of the ingest token, or "" when auth is off
    tenant: str = ""
    #: "http", "grpc", or the internal producer ("observer", "health", "self")
    source: str = ""
    rejected_points: int = 0
    #: first few rejection messages, English, for `partial_success.error_message`
    errors: list[str] = field(default_factory=list)
    #: the series store's cardinality decisions, by the metric's position in `request`
    #: (resource, scope, metric index), for the overflow folder that follows the store on the
    #: forward path: it reads them instead of computing every point's identity a second time
    #: (that doubled the cost of a point under a cardinality attack). Empty until a stream
    #: overflows.
    overflowed: dict[tuple[int, int, int], Overflowed] = field(default_factory=dict)

    _MAX_ERRORS = 5

    def reject(self, count: int, message: str) -> None:
        """Count `count` refused points; keep the message if there is room."""
        self.rejected_points += count
        if len(self.errors) < self._MAX_ERRORS and message not in self.errors:
            self.errors.append(message)

    @property
    def error_message(self) -> str:
        return "; ".join(self.errors)
