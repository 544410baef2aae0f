"""ViewProcessor: renames, attributes, value maps, aggregation, derived counters, scopes; read
through the real series store and exposition. Config errors name their YAML path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from gateway.config import ConfigError, load
from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from gateway.processors.defaults import default_views
from gateway.processors.views import ViewConfig, ViewProcessor
from tests.support.otlp import DELTA, Req
from tests.support.promtext import Samples, parse

B = [0.1, 1.0]


def views(*raw: dict[str, Any]) -> ViewProcessor:
    return ViewProcessor([ViewConfig.model_validate(v) for v in raw])


def run(processor: ViewProcessor, req: Req) -> tuple[MetricsBatch, Samples]:
    batch = MetricsBatch(req.request)
    processor.process(batch)
    store = SeriesStore()
    store.consume(batch)
    return batch, parse(render(store).decode())


def http(method: str, route: str | None, status: int, scheme: str = "http") -> dict[str, Any]:
    a: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
    if route is not None:
        a["http.route"] = route
    a["http.response.status_code"] = status
    return a


def test_worked_example_of_the_module_docstring() -> None:
    req = Req(scope="instrumentation.http").histogram(
        "http.server.request.duration",
        [
            (http("GET", "/users/{id}", 200), B, [4, 3, 0], 1.5, 0, 10),
            (http("GET", "/users/{id}", 204), B, [2, 0, 0], 0.1, 0, 10),
            (http("GET", None, 404), B, [1, 0, 0], 0.01, 0, 10),
        ],
        unit="s",
    )
    _, s = run(ViewProcessor(default_views()), req)
    assert s.all("coderunner_api_requests_total") == [
        ({"job": "svc", "instance": "i-1", "method": "GET", "endpoint": "/users/{id}",
          "status": "2xx"}, 9.0),
        ({"job": "svc", "instance": "i-1", "method": "GET", "endpoint": "unknown",
          "status": "4xx"}, 1.0),
    ]  # fmt: skip
    assert s.value("coderunner_api_duration_seconds_count", endpoint="/users/{id}") == 9
    assert s.value("coderunner_api_duration_seconds_sum", endpoint="/users/{id}") == 1.6
    assert s.value("coderunner_api_duration_seconds_bucket", endpoint="/users/{id}", le="0.1") == 6
    assert not [n for n in s.names() if n.startswith("http_")]


def test_histogram_keys_ignore_min_max_flags_and_exemplars() -> None:
    """Points with equal attributes and different min/max/exemplars land in one output group;
    points with other attributes do not."""
    req = Req().histogram("lat", [({"k": "a"}, B, [1, 0, 0], 0.05, 0, 10)], unit="s")
    m = req.request.resource_metrics[0].scope_metrics[0].metrics[0]
    first = m.histogram.data_points[0]
    first.min, first.max = 0.05, 0.05
    second = m.histogram.data_points.add()
    second.CopyFrom(first)
    second.min, second.max = 0.01, 0.5
    second.exemplars.add().as_double = 0.5
    third = m.histogram.data_points.add()
    third.CopyFrom(first)
    third.attributes[0].value.string_value = "b"
    processor = views({"select": {"instrument": "lat"}, "attributes": {"keep": ["k"]}})
    batch, s = run(processor, req)
    assert s.value("lat_seconds_count", k="a") == 2
    assert s.value("lat_seconds_count", k="b") == 1
    out = batch.request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points
    assert (out[0].min, out[0].max) == (0.01, 0.5)


def test_catalogue_histograms_keep_the_exemplars_of_the_points_added_up() -> None:
    """A latency spike on coderunner_api_duration_seconds still links to its trace: the
    default views add up points (other schemes, other status codes) and keep every exemplar."""
    req = Req(scope="instrumentation.http").histogram(
        "http.server.request.duration",
        [
            (http("GET", "/pay", 200, "http"), B, [1, 0, 0], 0.05, 0, 10),
            (http("GET", "/pay", 200, "https"), B, [0, 0, 1], 3.0, 0, 10),
            (http("GET", "/pay", 204, "http"), B, [0, 1, 0], 0.5, 0, 10),
        ],
        unit="s",
    )
    dps = req.request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points
    for i, (p, value) in enumerate(zip(dps[:2], (0.05, 3.0), strict=True)):
        e = p.exemplars.add()
        e.trace_id, e.span_id = bytes([i + 1]) * 16, bytes([i + 1]) * 8
        e.as_double, e.time_unix_nano = value, 9_000_000_000
    batch = MetricsBatch(req.request)
    ViewProcessor(default_views()).process(batch)
    store = SeriesStore(StoreSettings(exemplars=True))
    store.consume(batch)
    text = render(store, openmetrics=True).decode()
    buckets = {
        s.labels["le"]: s
        for f in openmetrics_families(text)
        for s in f.samples
        if s.name == "coderunner_api_duration_seconds_bucket"
    }
    assert buckets["0.1"].value == 1 and buckets["+Inf"].value == 3
    assert buckets["0.1"].exemplar.labels["trace_id"] == "01" * 16
    assert buckets["1.0"].exemplar is None  # its point had none
    assert buckets["+Inf"].exemplar.labels["trace_id"] == "02" * 16
    assert buckets["+Inf"].exemplar.value == 3.0


def test_rename_only_changes_the_metric_in_place_and_drops_the_scope() -> None:
    req = Req(scope="lib").sum("orders", [({"shop": "x"}, 3, 0, 10)])
    batch, s = run(
        views({"select": {"instrument": "ord*"}, "rename": {"name": "shop.orders", "unit": "1"}}),
        req,
    )
    assert s.all("shop_orders_total") == [({"job": "svc", "instance": "i-1", "shop": "x"}, 3.0)]
    assert not batch.request.resource_metrics[0].scope_metrics[0].scope.name


def test_only_the_viewed_metrics_leave_a_scope_that_others_keep() -> None:
    req = Req(scope="lib").sum("a", [({}, 1, 0, 10)]).sum("b", [({}, 2, 0, 10)])
    _, s = run(views({"select": {"instrument": "a"}}), req)
    assert s.all("a_total") == [({"job": "svc", "instance": "i-1"}, 1.0)]
    assert s.value("b_total", otel_scope_name="lib") == 2


def test_drop_scope_false_keeps_the_scope() -> None:
    req = Req(scope="lib").sum("a", [({"k": "1"}, 1, 0, 10)])
    _, s = run(views({"select": {"instrument": "a"}, "drop_scope": False,
                      "attributes": {"rename": {"k": "key"}}}), req)  # fmt: skip
    assert s.value("a_total", otel_scope_name="lib", key="1") == 1


def test_dropped_attributes_are_summed_for_cumulative_and_delta() -> None:
    points = [({"k": "1", "pod": "a"}, 5, 0, 10), ({"k": "1", "pod": "b"}, 7, 0, 10)]
    processor = views({"select": {"instrument": "c"}, "attributes": {"drop": ["pod"]}})
    _, s = run(processor, Req().sum("c", points))
    assert s.all("c_total") == [({"job": "svc", "instance": "i-1", "k": "1"}, 12.0)]
    _, s = run(processor, Req().sum("c", points, temporality=DELTA))
    assert s.value("c_total", k="1") == 12


def test_up_down_counter_keeps_its_kind_and_sums() -> None:
    req = Req().sum(
        "http.server.active_requests",
        [({"http.request.method": "GET", "url.scheme": s}, n, 0, 10)
         for s, n in (("http", 2), ("https", 3))],
        monotonic=False,
        unit="{request}",
    )  # fmt: skip
    _, s = run(ViewProcessor(default_views()), req)
    assert s.types["coderunner_api_active_requests"] == "gauge"
    assert s.value("coderunner_api_active_requests", method="GET") == 5


def test_value_maps_function_map_other_and_default() -> None:
    processor = views({
        "select": {"instrument": "c"},
        "attributes": {"values": {
            "code": {"function": "status_class"},
            "m": {"function": "lower", "map": {"get": "read"}, "other": "write"},
            "missing": {"default": "none"},
        }, "keep": ["code", "m", "missing"]},
    })  # fmt: skip
    points = [({"code": 503, "m": "GET"}, 1, 0, 10), ({"code": "abc", "m": "POST"}, 2, 0, 10)]
    _, s = run(processor, Req().sum("c", points))
    assert s.value("c_total", code="5xx", m="read", missing="none") == 1
    assert s.value("c_total", code="abc", m="write", missing="none") == 2


def test_point_attribute_selector_takes_only_matching_points() -> None:
    """The view takes the matching points; the others stay as they were."""
    processor = views(
        {"select": {"instrument": "c", "attributes": {"env": "prod*"}}, "rename": {"name": "p"}}
    )
    points = [({"env": "prod-eu"}, 1, 0, 10), ({"env": "dev"}, 2, 0, 10), ({}, 4, 0, 10)]
    _, s = run(processor, Req(scope="lib").sum("c", points))
    assert [v for _, v in s.all("p_total")] == [1.0]
    assert sorted(v for _, v in s.all("c_total", otel_scope_name="lib")) == [2.0, 4.0]


def test_resource_selector() -> None:
    processor = views({"select": {"instrument": "c", "resource": {"service.name": "bill*"}},
                       "rename": {"name": "billing.c"}})  # fmt: skip
    _, s = run(processor, Req(service="billing").sum("c", [({}, 1, 0, 10)]))
    assert s.value("billing_c_total") == 1
    _, s = run(processor, Req(service="shop").sum("c", [({}, 1, 0, 10)]))
    assert s.value("c_total") == 1


def test_cost_counter_from_duration_sum_times_plan_rate() -> None:
    processor = views({
        "select": {"instrument": "build.duration", "kind": "histogram"},
        "to": "resource.costs",
        "derive": {"value": "sum", "rate": {"attribute": "plan",
                                            "rates": {"free": 0.0, "premium": 0.002}}},
        "attributes": {"keep": ["kind", "plan"], "rename": {"kind": "resource_type"}},
    })  # fmt: skip
    req = Req().histogram(
        "build.duration",
        [
            ({"plan": "premium", "kind": "compute"}, B, [0, 0, 2], 30.0, 0, 10),
            ({"plan": "free", "kind": "compute"}, B, [0, 0, 1], 12.0, 0, 10),
            ({"plan": "enterprise", "kind": "compute"}, B, [0, 0, 1], 50.0, 0, 10),
        ],
        unit="s",
    )
    _, s = run(processor, req)
    assert s.value("coderunner_resource_costs_total", plan="premium") == pytest.approx(0.06)
    assert s.value("coderunner_resource_costs_total", plan="free") == 0
    # No rate for "enterprise" and no default: left out (and counted) rather than guessed.
    assert len(s.all("coderunner_resource_costs_total")) == 2
    assert processor.counters.dropped == {"view_no_rate": 1}


def test_derive_value_from_a_sum_with_default_rate() -> None:
    processor = views({
        "select": {"instrument": "cpu.seconds"},
        "rename": {"name": "cost", "unit": "{USD}"},
        "derive": {"value": "value", "rate": {"attribute": "plan", "rates": {"a": 2.0},
                                              "default": 0.5}},
    })  # fmt: skip
    req = Req().sum("cpu.seconds", [({"plan": "a"}, 3, 0, 10), ({"plan": "z"}, 4, 0, 10)])
    _, s = run(processor, req)
    assert s.value("cost_total", plan="a") == 6
    assert s.value("cost_total", plan="z") == 2


def test_a_view_that_cannot_apply_leaves_the_metric_unchanged() -> None:
    processor = views({"select": {"instrument": "g"}, "to": "api.requests"})
    _, s = run(processor, Req().gauge("g", [({"k": "1"}, 2.5, 10)]))
    assert s.value("g", k="1") == 2.5


def test_histograms_with_other_bounds_are_not_merged() -> None:
    processor = views({"select": {"instrument": "h"}, "attributes": {"drop": ["pod"]}})
    req = Req().histogram(
        "h",
        [({"pod": "a"}, B, [1, 0, 0], 0.05, 0, 10), ({"pod": "b"}, [5.0], [1, 0], 0.5, 0, 10)],
    )
    _, s = run(processor, req)
    assert s.value("h_count") == 1
    assert processor.counters.dropped == {"view_bounds_mismatch": 1}


def test_histograms_with_same_bounds_but_other_bucket_counts_are_not_merged() -> None:
    """A point without buckets (or with a malformed count) beside one with them: left out and
    counted, not a failed request."""
    processor = views({"select": {"instrument": "h"}, "attributes": {"drop": ["pod"]}})
    req = Req().histogram(
        "h", [({"pod": "a"}, [5.0], [1, 0], 0.5, 0, 10), ({"pod": "b"}, [5.0], [2], 0.5, 0, 10)]
    )
    _, s = run(processor, req)
    assert s.value("h_count") == 1
    assert processor.counters.dropped == {"view_bounds_mismatch": 1}


def test_unselected_metrics_pass_untouched() -> None:
    req = Req(scope="lib").sum("other", [({"k": "1"}, 1, 0, 10)])
    before = req.request.SerializeToString()
    batch = MetricsBatch(req.request)
    ViewProcessor(default_views()).process(batch)
    assert batch.request.SerializeToString() == before


def test_the_attribute_cache_gives_the_same_result_on_repeat() -> None:
    processor = ViewProcessor(default_views())
    for t in (10, 20):
        req = Req().histogram(
            "http.server.request.duration",
            [(http("POST", "/deploy", 201), B, [1, 1, t], 2.0, 0, t)],
            unit="s",
        )
        _, s = run(processor, req)
        assert s.value("coderunner_api_requests_total", status="2xx") == 2 + t


def test_every_default_view_names_a_catalogue_metric_or_keeps_names() -> None:
    for view in default_views():
        assert (
            view.to is not None
            or view.select.instrument == "{namespace}.*"
            or view.select.instrument == f"{view.from_namespace}.*"
        )


def test_as_int_input_stays_integer_when_summed() -> None:
    processor = views({"select": {"instrument": "c"}, "attributes": {"drop": ["p"]}})
    req = Req().sum("c", [({"p": "1"}, 2, 0, 10), ({"p": "2"}, 3, 0, 10)])
    batch, _ = run(processor, req)
    point = batch.request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    assert point.WhichOneof("value") == "as_int" and point.as_int == 5


# ------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    ("view", "path"),
    [
        ({"select": {"instrument": "x"}, "to": "no.such"}, "views[1].to:"),
        ({"select": {"instrument": "x"}, "rename": {"nam": "y"}}, "views[1].rename.nam:"),
        ({"select": {"instrument": "x", "kind": "sums"}}, "views[1].select.kind:"),
        ({"select": {"instrument": "x"}, "derive": {"value": "count"}, "to": "api.duration"},
         "views[1]:"),
        ({"select": {"instrument": "x"}, "attributes": {"keep": ["a"], "drop": ["b"]}},
         "views[1].attributes:"),
    ],
)  # fmt: skip
def test_config_errors_name_the_yaml_path(view: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"views": [{"select": {"instrument": "ok"}}, view]})
    assert any(e.startswith(path) for e in info.value.errors), info.value.errors


@pytest.mark.integration
def test_check_config_prints_the_view_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "views:\n"
        "  - select: {instrument: a}\n"
        "  - select: {instrument: b}\n"
        "  - select: {instrument: c}\n"
        "  - select: {instrument: d}\n"
        "    rename: {name: ''}\n"
        "cardinality:\n  max_series_per_stream: 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "views[3].rename.name:" in result.stderr
    assert "cardinality.max_series_per_stream:" in result.stderr


def test_views_empty_list_turns_views_off() -> None:
    assert load({"views": []}).views == ()
    assert len(load().views) == len(default_views())


def test_builds_valid_protobuf() -> None:
    """Output bytes parse back into the same messages the SDK would build."""
    req = Req().histogram(
        "http.server.request.duration", [(http("GET", "/a", 200), B, [1, 2, 3], 9.5, 1, 10)]
    )
    batch = MetricsBatch(req.request)
    ViewProcessor(default_views()).process(batch)
    again = metrics_pb2.ResourceMetrics()
    again.ParseFromString(batch.request.resource_metrics[0].SerializeToString())
    metrics = {m.name: m for sm in again.scope_metrics for m in sm.metrics}
    hist = metrics["coderunner.api.duration"].histogram.data_points[0]
    assert list(hist.bucket_counts) == [1, 2, 3] and list(hist.explicit_bounds) == B
    assert (hist.count, hist.sum, hist.start_time_unix_nano) == (6, 9.5, 1_000_000_000)
    count = metrics["coderunner.api.requests"].sum
    assert count.is_monotonic and count.data_points[0].as_int == 6


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),  # the attribute the view drops
            st.sampled_from(["x", "y"]),  # the one it keeps
            st.lists(st.integers(0, 300), min_size=3, max_size=3),  # bucket counts
            st.floats(0.001, 100.0),  # sum
            st.booleans(),  # min and max set
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_merged_histograms_equal_a_field_by_field_sum(points: list[Any]) -> None:
    """The byte-level merge gives what adding the points' fields one by one gives."""
    req = Req().histogram(
        "h", [({"drop": d, "keep": k}, B, c, sm, 1, 10) for d, k, c, sm, _ in points]
    )
    dps = req.request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points
    for p, (*_, minmax) in zip(dps, points, strict=True):
        if minmax:
            p.min, p.max = p.sum / 1000, 2.0 + p.sum
    expected: dict[str, dict[str, Any]] = {}
    for p, (_, keep, *_rest) in zip(dps, points, strict=True):
        e = expected.setdefault(keep, {"counts": [0, 0, 0], "count": 0, "sum": 0.0, "mm": []})
        e["counts"] = [a + b for a, b in zip(e["counts"], p.bucket_counts, strict=True)]
        e["count"] += p.count
        e["sum"] += p.sum
        e["mm"].append((p.min, p.max) if p.HasField("min") else None)
    batch = MetricsBatch(req.request)
    views({"select": {"instrument": "h"}, "attributes": {"keep": ["keep"]}}).process(batch)
    out = batch.request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points
    assert len(out) == len(expected)
    for q in out:
        e = expected[q.attributes[0].value.string_value]
        assert list(q.bucket_counts) == e["counts"] and q.count == e["count"]
        assert list(q.explicit_bounds) == B
        assert q.sum == pytest.approx(e["sum"], rel=1e-12)
        assert (q.start_time_unix_nano, q.time_unix_nano) == (1_000_000_000, 10_000_000_000)
        if all(mm is not None for mm in e["mm"]):
            assert (q.min, q.max) == (min(m[0] for m in e["mm"]), max(m[1] for m in e["mm"]))
        else:
            assert not q.HasField("min") and not q.HasField("max")


def test_default_views_move_catalogue_names_into_the_gateways_namespace() -> None:
    """A service that names business metrics under the default namespace needs no knowledge
    of the gateway's: catalogue names move, other names under it stay as they are."""
    req = (
        Req(scope="billing")
        .sum("coderunner.deployments", [({"status": "success", "type": "py"}, 2, 0, 10)])
        .sum("coderunner.invoices", [({}, 5, 0, 10)])
        .sum("acme.user.activity", [({"action": "pay", "plan_type": "team"}, 1, 0, 10)])
    )
    _, s = run(ViewProcessor(default_views(), namespace="acme"), req)
    svc = {"job": "svc", "instance": "i-1"}
    assert s.all("acme_deployments_total") == [({**svc, "status": "success", "type": "py"}, 2.0)]
    assert s.all("acme_user_activity_total") == [
        ({**svc, "action": "pay", "plan_type": "team"}, 1.0)
    ]
    assert not s.all("coderunner_deployments_total")
    assert s.value("coderunner_invoices_total", otel_scope_name="billing") == 5


def test_in_the_default_namespace_the_move_does_nothing() -> None:
    req = Req(scope="billing").sum(
        "coderunner.deployments", [({"status": "ok", "type": "py"}, 2, 0, 10)]
    )
    _, s = run(ViewProcessor(default_views()), req)
    # One series, not two: the move view does not select it next to catalogue-scope.
    assert s.all("coderunner_deployments_total") == [
        ({"job": "svc", "instance": "i-1", "status": "ok", "type": "py"}, 2.0)
    ]


def test_from_namespace_only_moves_names() -> None:
    with pytest.raises(ValueError, match="from_namespace only moves names"):
        ViewConfig.model_validate(
            {"select": {"instrument": "x.*"}, "from_namespace": "x", "to": "deployments"}
        )
