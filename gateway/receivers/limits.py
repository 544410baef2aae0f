"""`InputLimits`: what one export request may carry, checked by both receivers after decoding.

- more than `max_points_per_request` points: the whole request is refused (HTTP 400, gRPC
  INVALID_ARGUMENT) with a message that names the limit;
- a point with more than `max_attributes_per_point` attributes, a string (or bytes) attribute
  value longer than `max_attribute_value_length`, or a key longer than
  `max_attribute_key_length`: the point is removed and counted in `partial_success`; a resource
  or scope whose own attributes break the limits loses all its points.

The limits on resources, scopes, metrics and points per request are also checked on the wire,
before parsing (`gateway.receivers.wire.check_shape`, through `shape`), and so is the memory
the parse may take (`check_decoded`, through `max_decoded`).

Metric names are checked where the name is turned into a Prometheus name (the store), which
reports bad names the same way, in `partial_success`.

Points' attributes are not walked here: the store calls `point_problem` when it first sees a
series (an attribute set it has admitted cannot break the limits), so the check costs nothing
for the points of known series; a separate walk over every point cost 12-15 % of the
gateway's throughput. `point_problem` itself costs one C call (`ByteSize()`) unless the point
is large enough to break a limit: a value over `max_attribute_value_length` needs at least that
many bytes, and more than `max_attributes_per_point` attributes need two bytes each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from gateway.config import LimitsConfig
from gateway.errors import PermanentError
from gateway.pipeline.batch import MetricsBatch
from gateway.receivers.wire import ShapeLimits

__all__ = ["InputLimits"]

_NO_LIMIT = 1 << 62


def _long_key(attributes: Iterable[KeyValue], limit: int) -> bool:
    return any(len(kv.key) > limit for kv in attributes)


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
        self._max_key = config.max_attribute_key_length
        #: points refused here (a resource's or scope's attributes), by reason label, for
        #: `gateway.points.rejected` (the store counts the points it refuses itself)
        self.rejected: dict[str, int] = {}
        #: a point at most this large cannot break any attribute limit (0: no limit)
        self._threshold = min(
            self._max_length or _NO_LIMIT,
            2 * self._max_attributes if self._max_attributes else _NO_LIMIT,
            self._max_key or _NO_LIMIT,
        )
        #: most memory parsing one protobuf request may take (0: no limit), bounded on the
        #: wire before parsing (`gateway.receivers.wire.check_decoded`)
        self.max_decoded = config.max_decoded_bytes
        #: containers per request, counted on the wire before parsing
        self.shape = ShapeLimits(
            resources=config.max_resources_per_request,
            scopes=config.max_scopes_per_request,
            metrics=config.max_metrics_per_request,
            points=config.max_points_per_request,
        )

    def _bad(self, attributes: Any, size: int) -> str | None:
        if self._max_attributes and len(attributes) > self._max_attributes:
            return (
                f"{len(attributes)} attributes, more than the limit of {self._max_attributes} "
                "(limits.max_attributes_per_point)"
            )
        if self._max_key and size > self._max_key and _long_key(attributes, self._max_key):
            return (
                f"an attribute key longer than {self._max_key} characters "
                "(limits.max_attribute_key_length)"
            )
        if self._max_length and size > self._max_length and _too_long(attributes, self._max_length):
            return (
                f"an attribute longer than {self._max_length} characters "
                "(limits.max_attribute_value_length)"
            )
        return None

    @property
    def checks_points(self) -> bool:
        """False when both attribute limits are off: nothing to check per series."""
        return self._threshold != _NO_LIMIT

    def apply(self, batch: MetricsBatch, points: int) -> None:
        """Raise `PermanentError` for a request over the point limit; refuse (and count) every
        point of a resource whose own attributes break the limits. Points' attributes are
        checked by the store with `point_problem`, when it first sees a series."""
        if points > self._max_points:
            raise PermanentError(
                f"request carries {points} data points, more than the limit of "
                f"{self._max_points} (limits.max_points_per_request); split it"
            )
        if self._threshold == _NO_LIMIT:
            return
        for rm in batch.request.resource_metrics:
            problem = self._bad(rm.resource.attributes, rm.resource.ByteSize())
            for sm in rm.scope_metrics:
                where = "resource"
                if problem is None:
                    scope_problem = self._bad(sm.scope.attributes, sm.scope.ByteSize())
                    if scope_problem is None:
                        continue
                    where = "scope"
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    dps = getattr(metric, kind).data_points
                    if len(dps):
                        batch.reject(len(dps), f"{where} has {problem or scope_problem}")
                        self.rejected["invalid_attributes"] = self.rejected.get(
                            "invalid_attributes", 0
                        ) + len(dps)
                        del dps[:]

    def point_problem(self, point: Any) -> str | None:
        """What is wrong with a data point's attributes, or None. The store asks this only the
        first time it sees a series: an admitted attribute set cannot break the limits, so the
        check costs nothing per point afterwards."""
        size = point.ByteSize()
        if size <= self._threshold:
            return None
        return self._bad(point.attributes, size)
