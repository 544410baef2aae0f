"""check_shape: counts resources, scopes, metrics and points on the wire, as the parser would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.errors import PermanentError
from gateway.pipeline.batch import count_points
from gateway.receivers.wire import ShapeLimits, check_shape

NONE = ShapeLimits(0, 0, 0, 0)


def build(layout: list[list[list[int]]]) -> ExportMetricsServiceRequest:
    """layout[r][s][m] = points of metric m of scope s of resource r (alternating kinds)."""
    req = ExportMetricsServiceRequest()
    for r, scopes in enumerate(layout):
        rm = req.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = f"svc{r}\n\x12"
        for s, metrics in enumerate(scopes):
            sm = rm.scope_metrics.add()
            sm.scope.name = f"scope{s}"
            for m, points in enumerate(metrics):
                metric = sm.metrics.add()
                metric.name = f"m{m}"
                for i in range(points):
                    if m % 3 == 0:
                        p = metric.sum.data_points.add()
                        p.as_int = i
                    elif m % 3 == 1:
                        p = metric.gauge.data_points.add()
                        p.as_double = 1.5
                    else:
                        h = metric.histogram.data_points.add()
                        h.count = 10
                        h.explicit_bounds.extend([1.0, 10.0])
                        h.bucket_counts.extend([1, 2, 7])
                        h.attributes.add(key="k").value.string_value = "\n" * 5
    return req


layouts = st.lists(
    st.lists(st.lists(st.integers(0, 4), max_size=4), max_size=4), min_size=0, max_size=4
)


@settings(max_examples=200, deadline=None)
@given(layouts)
def test_counts_what_the_parser_builds(layout: list[list[list[int]]]) -> None:
    req = build(layout)
    shape = check_shape(req.SerializeToString(), ShapeLimits(10**6, 10**6, 10**6, 10**6))
    assert shape is None  # nothing near a limit: the quick count skips the scan
    body = req.SerializeToString()
    points = count_points(req)
    limits = ShapeLimits(10**6, 10**6, 10**6, max(points, 0) or 1)
    if body.count(b"\x0a") > limits.points:
        shape = check_shape(body, limits)
        assert shape is not None
        assert shape.resources == len(req.resource_metrics)
        assert shape.scopes == sum(len(rm.scope_metrics) for rm in req.resource_metrics)
        assert shape.points == points
    metrics = sum(len(sm.metrics) for rm in req.resource_metrics for sm in rm.scope_metrics)
    at_limits = ShapeLimits(
        max(len(req.resource_metrics), 1),
        max(sum(len(rm.scope_metrics) for rm in req.resource_metrics), 1),
        max(metrics, 1),
        max(points, 1),
    )
    check_shape(body, at_limits)  # exactly at every limit: taken


@pytest.mark.parametrize(
    ("body", "limits", "key"),
    [
        (b"\x0a\x00" * 3, ShapeLimits(2, 0, 0, 0), "max_resources_per_request"),
        (b"\x0a\x06" + b"\x12\x00" * 3, ShapeLimits(0, 2, 0, 0), "max_scopes_per_request"),
        (b"\x0a\x08\x12\x06" + b"\x12\x00" * 3, ShapeLimits(0, 0, 2, 0), "max_metrics_per_request"),
        (
            b"\x0a\x0c\x12\x0a\x12\x08\x3a\x06" + b"\x0a\x00" * 3,
            ShapeLimits(0, 0, 0, 2),
            "max_points_per_request",
        ),
    ],
)
def test_refuses_each_container_over_its_limit(body: bytes, limits: ShapeLimits, key: str) -> None:
    ExportMetricsServiceRequest.FromString(body)  # valid protobuf
    with pytest.raises(PermanentError, match=rf"limits\.{key}"):
        check_shape(body, limits)


def test_stops_at_the_limit_without_reading_the_rest() -> None:
    # Ten million empty resources and then garbage: refused at the third resource.
    body = b"\x0a\x00" * 3 + b"\xff" * 10
    with pytest.raises(PermanentError, match="max_resources_per_request"):
        check_shape(body, ShapeLimits(2, 0, 0, 0))


def test_unreadable_bodies_are_left_to_the_parser() -> None:
    # truncated, then a group (not OTLP): scanned as far as readable, no error of its own
    assert check_shape(b"\x0a\x00\x0a\x05\x12", ShapeLimits(5, 5, 5, 1)) is not None
    assert check_shape(b"\x0a\x00\x0b\x0a", ShapeLimits(5, 5, 5, 1)) is not None
