"""`InputLimits`: what one export request may carry, checked by both receivers after decoding.

- more than `max_points_per_request` points: the whole request is refused (HTTP 400, gRPC
  INVALID_ARGUMENT) with a message that names the limit;
- a point with more than `max_attributes_per_point` attributes, or a string (or bytes) attribute
  value longer than `max_attribute_value_length`: the point is removed and counted in
  `partial_success`; a resource whose own attributes break the limits loses all its points.

Metric names are checked where the name is turned into a Prometheus name (the store), which
reports bad names the same way, in `partial_success`.

The walk over every point is in Python, so each point costs one C call: its serialized size
(`ByteSize()`). Only a point large enough to break a limit has its attributes looked at: a value
over `max_attribute_value_length` needs at least that many bytes, and more than
`max_attributes_per_point` attributes need at least two bytes each (tag and length).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.config import LimitsConfig
from gateway.errors import PermanentError
from gateway.pipeline.batch import MetricsBatch

__all__ = ["InputLimits"]

_NO_LIMIT = 1 << 62


def _too_long(attributes: Iterable[KeyValue], limit: int) -> bool:
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            if len(value.string_value) > limit:
                return True
        elif kind == "bytes_value":
            if len(value.bytes_value) > limit:
                return True
        elif kind in ("array_value", "kvlist_value") and value.ByteSize() > limit:
            return True
        if len(kv.key) > limit:
            return True
    return False


class InputLimits:
    def __init__(self, config: LimitsConfig) -> None:
        self._max_points = config.max_points_per_request
        self._max_attributes = config.max_attributes_per_point
        self._max_length = config.max_attribute_value_length
        #: a point at most this large cannot break either attribute limit (0: no limit)
        self._threshold = min(
            self._max_length or _NO_LIMIT,
            2 * self._max_attributes if self._max_attributes else _NO_LIMIT,
        )

    def _bad(self, attributes: Any, size: int) -> str | None:
        if self._max_attributes and len(attributes) > self._max_attributes:
            return (
                f"{len(attributes)} attributes, more than the limit of {self._max_attributes} "
                "(limits.max_attributes_per_point)"
            )
        if self._max_length and size > self._max_length and _too_long(attributes, self._max_length):
            return (
                f"an attribute longer than {self._max_length} characters "
                "(limits.max_attribute_value_length)"
            )
        return None

    def apply(self, batch: MetricsBatch, points: int) -> None:
        """Raise `PermanentError` for a request over the point limit; remove and count the
        points that break the attribute limits."""
        if points > self._max_points:
            raise PermanentError(
                f"request carries {points} data points, more than the limit of "
                f"{self._max_points} (limits.max_points_per_request); split it"
            )
        if self._threshold == _NO_LIMIT:
            return
        for rm in batch.request.resource_metrics:
            resource_problem = self._bad(rm.resource.attributes, rm.resource.ByteSize())
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    dps = getattr(metric, kind).data_points
                    if resource_problem is not None:
                        if len(dps):
                            batch.reject(len(dps), f"resource has {resource_problem}")
                            del dps[:]
                        continue
                    self._check_points(batch, metric.name, dps)

    def _check_points(self, batch: MetricsBatch, name: str, dps: Any) -> None:
        bad: list[int] = []
        problem = None
        threshold = self._threshold
        for i, p in enumerate(dps):
            size = p.ByteSize()
            if size > threshold:
                found = self._bad(p.attributes, size)
                if found is not None:
                    bad.append(i)
                    problem = problem or found
        if bad:
            for i in reversed(bad):
                del dps[i]
            batch.reject(len(bad), f"metric {name[:64]!r}: data point with {problem}")
