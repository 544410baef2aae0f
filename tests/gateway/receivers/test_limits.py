"""InputLimits: whole requests over the point limit are refused; points over the attribute
limits are removed and counted for partial_success, by the store on first sight of a series
(as the gateway wires it)."""

from __future__ import annotations

import pytest

from gateway.config import LimitsConfig
from gateway.errors import PermanentError
from gateway.exporters.prometheus.store import SeriesStore
from gateway.pipeline.batch import MetricsBatch, count_points
from gateway.receivers.limits import InputLimits
from tests.support.otlp import Req

LIMITS = InputLimits(
    LimitsConfig(
        max_points_per_request=10, max_attributes_per_point=3, max_attribute_value_length=20
    )
)


def batch(req: Req) -> MetricsBatch:
    return MetricsBatch(req.request)


def apply(b: MetricsBatch, limits: InputLimits = LIMITS) -> SeriesStore:
    """The receiver's check, then the store's, as in the gateway."""
    limits.apply(b, count_points(b.request))
    store = SeriesStore(point_check=limits.point_problem if limits.checks_points else None)
    store.consume(b)
    return store


def test_too_many_points_refuses_the_request_with_the_limit_named() -> None:
    b = batch(Req().sum("c", [({"i": i}, 1, 0, 1) for i in range(11)]))
    with pytest.raises(PermanentError, match=r"11 data points.*limits\.max_points_per_request"):
        apply(b)


def test_points_over_attribute_limits_are_removed_and_counted() -> None:
    b = batch(
        Req()
        .sum(
            "c",
            [
                ({"a": "ok"}, 1, 0, 1),
                ({"a": "x", "b": "y", "c": "z", "d": "w"}, 2, 0, 1),  # 4 attributes
                ({"a": "v" * 21}, 3, 0, 1),  # value over the limit
                ({"a": "v" * 20}, 4, 0, 1),  # exactly at the limit: kept
                ({"k" * 21: "v"}, 5, 0, 1),  # key too long
            ],
        )
        .gauge("g", [({}, 1.0, 1)])
    )
    g = b.request.resource_metrics[0].scope_metrics[0].metrics[1].gauge.data_points[0]
    g.attributes.add(key="raw").value.bytes_value = b"b" * 21
    apply(b)
    kept = [
        p.as_int for p in b.request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    ]
    assert kept == [1, 4]
    assert b.rejected_points == 4
    assert "limits.max_attributes_per_point" in b.error_message
    assert "limits.max_attribute_value_length" in b.error_message
    assert "metric 'g'" in b.error_message


def test_resource_over_the_limits_loses_all_its_points() -> None:
    b = batch(
        Req(service="a-service-name-over-20-characters").sum("c", [({}, 1, 0, 1), ({}, 2, 0, 1)])
    )
    apply(b)
    assert count_points(b.request) == 0
    assert b.rejected_points == 2
    assert "resource has" in b.error_message


def test_nested_values_count_by_size() -> None:
    b = batch(Req().sum("c", [({}, 1, 0, 1)]))
    p = b.request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    kv = p.attributes.add(key="arr")
    for s in ("abcdefgh", "ijklmnop", "qrstuvwx"):
        kv.value.array_value.values.add().string_value = s
    apply(b)
    assert b.rejected_points == 1


def test_a_refused_attribute_set_stays_refused_and_known_series_are_not_rechecked() -> None:
    calls: list[object] = []

    def check(point: object) -> str | None:
        calls.append(point)
        return LIMITS.point_problem(point)

    store = SeriesStore(point_check=check)
    for t in (1, 2, 3):
        b = batch(Req().sum("c", [({"a": "ok"}, t, 0, t), ({"a": "v" * 21}, t, 0, t)]))
        store.consume(b)
        assert b.rejected_points == 1
    # "ok" was checked once, when first seen; the refused set every time it came.
    assert len(calls) == 4


def test_within_limits_nothing_changes() -> None:
    req = Req().sum("c", [({"a": "1", "b": 2, "c": True}, 1, 0, 1)] * 10)
    before = req.request.SerializeToString()
    b = batch(req)
    apply(b)
    assert b.rejected_points == 0 and b.request.SerializeToString() == before


def test_zero_turns_the_attribute_checks_off() -> None:
    off = InputLimits(
        LimitsConfig(
            max_attributes_per_point=0, max_attribute_value_length=0, max_attribute_key_length=0
        )
    )
    assert not off.checks_points
    b = batch(Req().sum("c", [({f"k{i}": "v" * 10_000 for i in range(200)}, 1, 0, 1)]))
    apply(b, off)
    assert b.rejected_points == 0
    count_only = InputLimits(LimitsConfig(max_attributes_per_point=2, max_attribute_value_length=0))
    b = batch(Req().sum("c", [({"a": "v" * 10_000}, 1, 0, 1), ({"a": 1, "b": 2, "c": 3}, 1, 0, 1)]))
    apply(b, count_only)
    assert b.rejected_points == 1 and "max_attributes_per_point" in b.error_message


def test_long_keys_are_refused_below_the_value_limit() -> None:
    """Issue 17, finding 5: keys were only held to the value limit (4096)."""
    limits = InputLimits(LimitsConfig(max_attribute_key_length=24, max_attribute_value_length=64))
    b = batch(Req().sum("c", [({"k" * 25: "v"}, 1, 0, 1), ({"k" * 24: "v"}, 2, 0, 1)]))
    apply(b, limits)
    assert b.rejected_points == 1
    assert "limits.max_attribute_key_length" in b.error_message


def test_a_scope_with_long_keys_loses_its_points() -> None:
    limits = InputLimits(LimitsConfig(max_attribute_key_length=24))
    req = Req().sum("c", [({}, 1, 0, 1)])
    sm = req.request.resource_metrics[0].scope_metrics[0]
    sm.scope.attributes.add(key="s" * 25).value.string_value = "v"
    b = batch(req)
    apply(b, limits)
    assert b.rejected_points == 1
    assert "scope has an attribute key longer than 24" in b.error_message
