"""check_shape: counts resources, scopes, metrics and points on the wire, as the parser would;
decoded_bound: bounds the memory the parser takes from the same bytes."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from gateway.errors import PermanentError
from gateway.pipeline.batch import count_points
from gateway.receivers.wire import (
    WORST_PER_BYTE,
    ShapeLimits,
    _struct_bytes,
    check_decoded,
    check_shape,
    decoded_bound,
)
from tests.support.hostile import PADDINGS, padded_body

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
    # truncated: scanned as far as readable, no error of its own (the parser refuses it)
    body = b"\x0a\x00\x0a\x05\x12"
    assert check_shape(body, ShapeLimits(5, 5, 5, 1)) is not None
    with pytest.raises(DecodeError):
        ExportMetricsServiceRequest.FromString(body)


def test_a_group_is_refused_not_left_to_the_parser() -> None:
    """The parser keeps a group as an unknown field and parses on: a leading empty group
    (`13 14`) carried 20,000 resources past a limit of 10,000 while the scan gave up."""
    body = b"\x13\x14" + b"\x0a\x00" * 20_000
    assert len(ExportMetricsServiceRequest.FromString(body).resource_metrics) == 20_000
    with pytest.raises(PermanentError, match="group"):
        check_shape(body, ShapeLimits(10_000, 10_000, 100_000, 500_000))
    # deeper too: a group inside a resource, before its scopes
    body = b"\x0a\x04\x1b\x1c\x12\x00" * 6
    with pytest.raises(PermanentError, match="group"):
        check_shape(body, ShapeLimits(5, 5, 5, 5))


# --------------------------------------------------------------------------- decoded_bound


def _modelled(message: Message) -> int:
    """What `decoded_bound`'s model says parsing `message` took: every sub-message its
    modelled size plus a slot, every repeated string 32 bytes, every byte `_PER_BYTE`."""
    total = 0
    for field, value in message.ListFields():
        repeated = field.is_repeated
        values = list(value) if repeated else [value]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for v in values:
                total += _struct_bytes(v.DESCRIPTOR) + (16 if repeated else 0) + _modelled(v)
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            total += 32 * len(values) if repeated else 0
    return total


texts = st.text(alphabet=st.sampled_from("az\n\x12:*2BRjrz\x00"), max_size=6)
values = st.recursive(
    texts.map(lambda s: {"string_value": s})
    | st.integers(-(2**63), 2**63 - 1).map(lambda i: {"int_value": i}),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda vs: {"array_value": {"values": vs}})
        | st.lists(st.tuples(texts, inner), max_size=3).map(
            lambda kvs: {"kvlist_value": {"values": [{"key": k, "value": v} for k, v in kvs]}}
        )
    ),
    max_leaves=6,
)
attribute_lists = st.lists(st.tuples(texts, values), max_size=4)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(attribute_lists, st.integers(0, 3), st.sampled_from(["sum", "histogram"])),
        max_size=4,
    ),
    attribute_lists,
)
def test_the_bound_covers_every_message_the_parser_builds(
    points: list[tuple[list[Any], int, str]], resource_attributes: list[Any]
) -> None:
    """Whatever the body holds, each nested message is charged at least its modelled size:
    the bound can only be above the model (which the benchmark checks against upb)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for key, value in resource_attributes:
        rm.resource.attributes.add(key=key, value=value)
    metric = rm.scope_metrics.add().metrics.add(name="m")
    for attributes, exemplars, kind in points:
        p = getattr(metric, kind).data_points.add()
        for key, value in attributes:
            p.attributes.add(key=key, value=value)
        for _ in range(exemplars):
            p.exemplars.add().filtered_attributes.add(key="e")
    body = req.SerializeToString()
    assert decoded_bound(body) >= _modelled(req) * 1.25 + 2 * len(body)
    # with the point and metric limits check_shape enforces, at their tightest
    tight = ShapeLimits(0, 0, 1, count_points(req))
    assert decoded_bound(body, tight) >= _modelled(req) * 1.25 + 2 * len(body)


@pytest.mark.parametrize("kind", sorted(PADDINGS))
def test_padded_bodies_are_charged_for_their_empty_messages(kind: str) -> None:
    body = padded_body(kind, 100_000)
    req = ExportMetricsServiceRequest.FromString(body)
    bound = decoded_bound(body)
    assert bound >= _modelled(req) * 1.25
    # at least the 27-47x measured (bench/parse_memory.py), at most every second byte a
    # tag charged the largest message (0a 00 may be an empty exponential histogram point)
    assert 30 * len(body) < bound <= WORST_PER_BYTE * len(body)


def test_a_realistic_body_is_bounded_at_a_few_times_its_model() -> None:
    req = ExportMetricsServiceRequest()
    for r in range(3):
        rm = req.resource_metrics.add()
        rm.resource.attributes.add(key="service.name").value.string_value = f"api-{r}"
        metric = rm.scope_metrics.add().metrics.add(name="http.server.request.duration")
        for i in range(200):
            p = metric.histogram.data_points.add(count=3, sum=0.5)
            p.bucket_counts.extend([1, 2, 0])
            p.explicit_bounds.extend([0.1, 1.0])
            p.attributes.add(key="http.route").value.string_value = f"/api/v1/item{i}"
            p.attributes.add(key="http.response.status_code").value.int_value = 200
    body = req.SerializeToString()
    assert _modelled(req) < decoded_bound(body) < 5 * (_modelled(req) + 2 * len(body))


def test_check_decoded_refuses_over_the_limit_with_413() -> None:
    body = padded_body("attributes", 200_000)
    limit = decoded_bound(body) - 1
    with pytest.raises(PermanentError) as info:
        check_decoded(body, limit)
    assert info.value.http_status == 413
    assert "limits.max_decoded_bytes" in str(info.value)
    check_decoded(body, limit + 1)  # at the bound: allowed
    check_decoded(body, 0)  # 0: no limit


def test_small_bodies_are_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body that cannot reach the limit even if every second byte were a tag is passed
    without a scan: most requests cost nothing."""
    import gateway.receivers.wire as wire

    def scanned(body: bytes, limit: int, shape: ShapeLimits | None) -> int:
        raise AssertionError("scanned")

    monkeypatch.setattr(wire, "_bound", scanned)
    body = padded_body("exemplars", 50_000)
    check_decoded(body, len(body) * WORST_PER_BYTE)
    with pytest.raises(AssertionError):
        check_decoded(body, len(body) * WORST_PER_BYTE - 1)


def test_field_numbers_without_messages_are_not_charged() -> None:
    """No message of the schema has a message or a repeated string numbered 13-15: those
    tags cost their bytes only."""
    assert decoded_bound(b"\x6a\x00\x72\x00\x7a\x00") == 2 * 6
    assert decoded_bound(b"\x3a\x00") > 2 * 2


def test_a_body_under_the_limit_at_the_largest_cost_is_not_counted_tag_by_tag() -> None:
    """The rough bound (every tag at the largest cost) is enough when it fits: it is returned
    instead of the exact count, and it is never below it."""
    from gateway.receivers.wire import _bound

    body = padded_body("attributes", 100_000)
    exact = decoded_bound(body)
    rough = _bound(body, 1 << 40, None)
    assert rough > exact
    assert _bound(body, rough - 1, None) == exact
    check_decoded(body, rough)  # fits roughly
    with pytest.raises(PermanentError):
        check_decoded(body, exact - 1)


def test_points_and_metrics_are_charged_up_to_their_limits() -> None:
    """A byte 0a may start a data point (up to 180 bytes charged) but check_shape lets at
    most `points` of them be points: the others are charged as the next largest message
    numbered 1 (a KeyValue, 80)."""
    body = padded_body("array values", 100_000)  # `0a 00` x ~50,000, one point
    loose = decoded_bound(body)
    tight = decoded_bound(body, ShapeLimits(0, 0, 1, 1))
    assert tight < loose * 0.5
    req = ExportMetricsServiceRequest.FromString(body)
    assert tight >= _modelled(req) * 1.25
